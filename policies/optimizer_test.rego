# Unit tests of finops.optimizer: every guardrail, firing and not firing. Run on the real engine by
# tests/test_rego_policies_pass_on_real_opa.py (EmbeddedOpa.run_tests), or with `opa test policies/`.
package finops.optimizer_test

import data.finops.optimizer

cfg := {
	"compositions": [
		{"apiVersion": "composition.krateo.io/v1-0-0", "kind": "VmAzure"},
		{"apiVersion": "composition.krateo.io/v0-1-4", "kind": "FinopsExamplePricingVmAzure"},
		{"apiVersion": "example.org/v1", "kind": "*"},
	],
	"max_reduction_percent": 80,
	"min_abs_delta": 5,
	"regions": [],
	"opt_out_label": "finops.krateo.io/optimize",
}

item(id, delta) := {
	"resourceid": id,
	"metricname": "Percentage CPU",
	"unit": "Percent",
	"optimization": {"from": "19:00", "to": "7:00", "resourceDelta": delta},
}

vm := {
	"apiVersion": "composition.krateo.io/v1-0-0",
	"kind": "VmAzure",
	"metadata": {"name": "vm1", "namespace": "demo", "labels": {}, "annotations": {}},
}

green := {
	"region": "swedencentral",
	"start": "2025-06-01T02:00:00Z",
	"mean_intensity": 40.5,
	"baseline_intensity": 310.0,
	"source": "electricitymaps",
	"message": "run in swedencentral from 02:00",
}

req(op, obj, items, placement, allowed) := {
	"operation": op,
	"object": obj,
	"proposals": {"rightsizing": items, "placement": placement, "allowed_regions": allowed},
}

update(items) := req("UPDATE", vm, items, null, ["westeurope"])

create(placement, allowed) := req("CREATE", vm, [], placement, allowed)

decide(request, config) := d if {
	d := optimizer.decision with input as request with data.finops.config as config
}

# ------------------------------------------------------------------ applies

test_listed_kind_applies if {
	optimizer.applies with input as update([]) with data.finops.config as cfg
}

test_unlisted_kind_does_not_apply if {
	obj := object.union(vm, {"kind": "VmAws"})
	not optimizer.applies with input as req("UPDATE", obj, [item("a", -40)], null, []) with data.finops.config as cfg
	d := optimizer.decision with input as req("UPDATE", obj, [item("a", -40)], null, []) with data.finops.config as cfg
	d.mutate == false
	d.rightsizing == null
	d.reasons == ["composition.krateo.io/v1-0-0 VmAws is not listed in finops.config.compositions"]
}

test_other_api_version_does_not_apply if {
	obj := object.union(vm, {"apiVersion": "composition.krateo.io/v9-9-9"})
	not optimizer.applies with input as req("UPDATE", obj, [], null, []) with data.finops.config as cfg
}

test_wildcard_kind_matches_every_kind_of_its_api_version if {
	obj := object.union(vm, {"apiVersion": "example.org/v1", "kind": "Anything"})
	optimizer.applies with input as req("UPDATE", obj, [], null, []) with data.finops.config as cfg
}

test_wildcard_kind_does_not_match_another_api_version if {
	obj := object.union(vm, {"apiVersion": "example.org/v2", "kind": "Anything"})
	not optimizer.applies with input as req("UPDATE", obj, [], null, []) with data.finops.config as cfg
}

test_opt_out_label_false_disables if {
	obj := object.union(vm, {"metadata": {"name": "vm1", "labels": {"finops.krateo.io/optimize": "false"}}})
	request := req("UPDATE", obj, [item("a", -40)], null, [])
	not optimizer.applies with input as request with data.finops.config as cfg
	d := optimizer.decision with input as request with data.finops.config as cfg
	d.mutate == false
	d.reasons == ["opted out: label finops.krateo.io/optimize is \"false\""]
}

test_opt_out_label_other_value_keeps_optimizing if {
	obj := object.union(vm, {"metadata": {"name": "vm1", "labels": {"finops.krateo.io/optimize": "true"}}})
	optimizer.applies with input as req("UPDATE", obj, [], null, []) with data.finops.config as cfg
}

test_opt_out_label_is_configurable if {
	obj := object.union(vm, {"metadata": {"name": "vm1", "labels": {"example.org/optimize": "false"}}})
	c := object.union(cfg, {"opt_out_label": "example.org/optimize"})
	not optimizer.applies with input as req("UPDATE", obj, [], null, []) with data.finops.config as c
	optimizer.applies with input as req("UPDATE", vm, [], null, []) with data.finops.config as c
}

test_delete_is_not_handled if {
	request := req("DELETE", vm, [item("a", -40)], null, [])
	not optimizer.applies with input as request with data.finops.config as cfg
	d := optimizer.decision with input as request with data.finops.config as cfg
	d.mutate == false
	d.reasons == ["operation \"DELETE\" is not handled (only CREATE, UPDATE and PING)"]
}

test_ping_is_handled_like_update if {
	d := optimizer.decision with input as req("PING", vm, [item("a", -40)], null, []) with data.finops.config as cfg
	d.mutate == true
	d.rightsizing == [item("a", -40)]
}

test_defaults_without_config_data if {
	# no data.finops.config at all: nothing is listed, nothing applies
	not optimizer.applies with input as update([]) with data.finops.config as {}
}

# ------------------------------------------------------------------ rightsizing guardrails

test_items_within_bounds_are_kept_unchanged if {
	d := decide(update([item("a", -40), item("b", 25)]), cfg)
	d.mutate == true
	d.rightsizing == [item("a", -40), item("b", 25)]
	d.reasons == []
	d.placement == null
}

test_reduction_beyond_max_is_clamped_with_a_reason if {
	d := decide(update([item("a", -95)]), cfg)
	d.rightsizing == [item("a", -80)]
	d.reasons == ["a Percentage CPU: resourceDelta -95 clamped to -80 (max_reduction_percent 80)"]
}

test_reduction_at_max_is_not_clamped if {
	d := decide(update([item("a", -80)]), cfg)
	d.rightsizing == [item("a", -80)]
	d.reasons == []
}

test_max_reduction_is_configurable if {
	d := decide(update([item("a", -60)]), object.union(cfg, {"max_reduction_percent": 50}))
	d.rightsizing == [item("a", -50)]
	count(d.reasons) == 1
}

test_tiny_delta_is_dropped_with_a_reason if {
	d := decide(update([item("a", 3), item("b", -4), item("c", 0)]), cfg)
	d.rightsizing == []
	d.mutate == true # like Krateo: the (empty) list is still written on UPDATE
	d.reasons == [
		"a Percentage CPU: resourceDelta 3 dropped (|resourceDelta| < min_abs_delta 5)",
		"b Percentage CPU: resourceDelta -4 dropped (|resourceDelta| < min_abs_delta 5)",
		"c Percentage CPU: resourceDelta 0 dropped (|resourceDelta| < min_abs_delta 5)",
	]
}

test_delta_at_min_is_kept if {
	d := decide(update([item("a", 5), item("b", -5)]), cfg)
	d.rightsizing == [item("a", 5), item("b", -5)]
	d.reasons == []
}

test_malformed_item_is_dropped_with_a_reason if {
	bad := object.remove(item("a", -40), ["unit"])
	d := decide(update([bad, item("b", -40), "junk"]), cfg)
	d.rightsizing == [item("b", -40)]
	count(d.reasons) == 2
}

test_item_shape_is_exactly_krateos if {
	extra := object.union(item("a", -40), {"clamped": true, "score": 1})
	d := decide(update([extra]), cfg)
	d.rightsizing == [item("a", -40)]
	object.keys(d.rightsizing[0]) == {"resourceid", "metricname", "unit", "optimization"}
	object.keys(d.rightsizing[0].optimization) == {"from", "to", "resourceDelta"}
}

test_rightsizing_is_sorted_by_resource_then_metric if {
	mem := object.union(item("a", -30), {"metricname": "Available Memory Bytes"})
	d := decide(update([item("c", -20), item("a", -40), mem, item("b", 10)]), cfg)
	[[r.resourceid, r.metricname] | some r in d.rightsizing] == [
		["a", "Available Memory Bytes"],
		["a", "Percentage CPU"],
		["b", "Percentage CPU"],
		["c", "Percentage CPU"],
	]
}

test_rightsizing_is_not_decided_on_create if {
	d := decide(req("CREATE", vm, [item("a", -40)], null, []), cfg)
	d.rightsizing == null
	d.mutate == false
	"rightsizing is only decided on UPDATE and PING: 1 proposals ignored on CREATE" in d.reasons
}

test_null_rightsizing_proposals_write_an_empty_list if {
	d := decide(req("UPDATE", vm, null, null, []), cfg)
	d.rightsizing == []
	d.mutate == true
}

# ------------------------------------------------------------------ placement guardrails

test_placement_in_allowed_region_is_kept if {
	d := decide(create(green, ["westeurope", "swedencentral"]), cfg)
	d.mutate == true
	d.placement == green
	d.rightsizing == null
	d.reasons == []
}

test_placement_outside_allowed_regions_is_refused if {
	d := decide(create(green, ["westeurope"]), cfg)
	d.mutate == false
	d.placement == null
	d.reasons == ["placement in swedencentral refused: not among the composition's allowed regions [\"westeurope\"]"]
}

test_placement_with_no_allowed_regions_is_refused if {
	d := decide(create(green, []), cfg)
	d.placement == null
	d.mutate == false
}

test_placement_outside_global_regions_is_refused if {
	d := decide(create(green, ["swedencentral"]), object.union(cfg, {"regions": ["westeurope"]}))
	d.placement == null
	d.mutate == false
	d.reasons == ["placement in swedencentral refused: not in finops.config.regions [\"westeurope\"]"]
}

test_placement_inside_global_regions_is_kept if {
	d := decide(create(green, ["swedencentral"]), object.union(cfg, {"regions": ["swedencentral", "westeurope"]}))
	d.placement == green
	d.mutate == true
}

test_placement_with_a_bad_start_is_refused if {
	d := decide(create(object.union(green, {"start": "tomorrow"}), ["swedencentral"]), cfg)
	d.placement == null
	d.reasons == ["placement in swedencentral refused: start tomorrow is not an RFC 3339 time"]
}

test_placement_dirtier_than_baseline_is_refused if {
	d := decide(create(object.union(green, {"mean_intensity": 400.0}), ["swedencentral"]), cfg)
	d.placement == null
	d.reasons == ["placement in swedencentral refused: mean intensity 400 is above the baseline 310"]
}

test_placement_keeps_only_its_fields if {
	d := decide(create(object.union(green, {"debug": "x"}), ["swedencentral"]), cfg)
	d.placement == green
}

test_create_without_placement_writes_nothing if {
	d := decide(create(null, ["swedencentral"]), cfg)
	d.mutate == false
	d.placement == null
	d.reasons == ["no placement proposal: nothing to write on CREATE"]
}

test_placement_is_not_decided_on_update if {
	d := decide(req("UPDATE", vm, [], green, ["swedencentral"]), cfg)
	d.placement == null
	d.rightsizing == []
	d.reasons == ["placement is only decided on CREATE: ignored on UPDATE"]
}

test_opted_out_create_gets_no_placement if {
	obj := object.union(vm, {"metadata": {"name": "vm1", "labels": {"finops.krateo.io/optimize": "false"}}})
	d := decide(req("CREATE", obj, [], green, ["swedencentral"]), cfg)
	d.placement == null
	d.mutate == false
}
