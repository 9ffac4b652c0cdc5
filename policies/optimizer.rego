# The optimizer's decision and guardrails (Rego v1, OPA >= 1.0).
#
# Python computes the proposals (day-2 rightsizing windows from the moving-window algorithm, day-1
# carbon-aware placement); this policy decides what, if anything, is written on the composition.
# It replaces Krateo's `router` + `finops_admission` packages (policies/main_router.rego and
# policies/moving_window.rego of krateoplatformops/finops-moving-window-policy-chart): the router's
# apiVersion/kind match is the `compositions` list in data.finops.config, and the written rightsizing
# list keeps Krateo's item shape exactly ({resourceid, metricname, unit, optimization{from, to,
# resourceDelta}}) so existing frontends keep working. Explanations go to `reasons`, never into items.
#
# input:
#   {"operation": "CREATE" | "UPDATE" | "PING",
#    "object": {"apiVersion", "kind", "metadata": {"name", "namespace", "labels", "annotations"}},
#    "proposals": {"rightsizing": [{"resourceid", "metricname", "unit",
#                                   "optimization": {"from", "to", "resourceDelta"}}],
#                  "placement": null | {"region", "start", "mean_intensity", "baseline_intensity",
#                                       "source", "message"},
#                  "allowed_regions": [region]}}
# data.finops.config (defaults in policies/data.json; every key optional here too):
#   compositions           [{"apiVersion", "kind"}]; "kind": "*" matches every kind of that apiVersion
#   max_reduction_percent  a proposal never shrinks by more than this (resourceDelta >= -this)
#   min_abs_delta          |resourceDelta| below this is no recommendation: the item is dropped
#   regions                global allow-list of placement regions; empty = no global restriction
#   opt_out_label          this label set to "false" on the object disables the optimizer for it
# output (data.finops.optimizer):
#   applies   bool: kind listed, not opted out, operation CREATE/UPDATE/PING
#   decision  {"mutate": bool,
#              "rightsizing": [items] (UPDATE/PING, sorted by resourceid, metricname) | null,
#              "placement": {...} (CREATE, when no guardrail refused it) | null,
#              "reasons": [one sorted string per guardrail that fired, or why nothing applies]}
package finops.optimizer

# ------------------------------------------------------------------ configuration

default config := {}

config := data.finops.config

compositions := object.get(config, "compositions", [])

max_reduction := object.get(config, "max_reduction_percent", 80)

min_abs_delta := object.get(config, "min_abs_delta", 5)

global_regions := object.get(config, "regions", [])

opt_out_label := object.get(config, "opt_out_label", "finops.krateo.io/optimize")

operations := {"CREATE", "UPDATE", "PING"}

rightsizing_operations := {"UPDATE", "PING"}

# ------------------------------------------------------------------ input

operation := object.get(input, "operation", "")

api_version := object.get(input, ["object", "apiVersion"], "")

kind := object.get(input, ["object", "kind"], "")

proposals := p if {
	p := input.proposals
	is_object(p)
} else := {}

proposed_items := items if {
	items := proposals.rightsizing
	is_array(items)
} else := []

proposed_placement := p if {
	p := proposals.placement
	is_object(p)
}

allowed_regions := regions if {
	regions := proposals.allowed_regions
	is_array(regions)
} else := []

# ------------------------------------------------------------------ does the optimizer act?

listed if {
	some c in compositions
	c.apiVersion == api_version
	c.kind in {kind, "*"}
}

opted_out if input.object.metadata.labels[opt_out_label] == "false"

default applies := false

applies if {
	listed
	not opted_out
	operation in operations
}

not_applying contains msg if {
	not listed
	msg := sprintf("%s %s is not listed in finops.config.compositions", [api_version, kind])
}

not_applying contains msg if {
	opted_out
	msg := sprintf("opted out: label %s is \"false\"", [opt_out_label])
}

not_applying contains msg if {
	not operation in operations
	msg := sprintf("operation %q is not handled (only CREATE, UPDATE and PING)", [operation])
}

wants_rightsizing if {
	applies
	operation in rightsizing_operations
}

wants_placement if {
	applies
	operation == "CREATE"
}

# ------------------------------------------------------------------ rightsizing (UPDATE, PING)

well_formed(item) if {
	is_string(item.resourceid)
	is_string(item.metricname)
	is_string(item.unit)
	is_string(item.optimization.from)
	is_string(item.optimization.to)
	is_number(item.optimization.resourceDelta)
}

floor_delta := 0 - max_reduction

clamped(delta) := floor_delta if {
	delta < floor_delta
} else := delta

guarded_items := [[item.resourceid, item.metricname, out] |
	some item in proposed_items
	well_formed(item)
	delta := clamped(item.optimization.resourceDelta)
	abs(delta) >= min_abs_delta
	out := {
		"resourceid": item.resourceid,
		"metricname": item.metricname,
		"unit": item.unit,
		"optimization": {
			"from": item.optimization.from,
			"to": item.optimization.to,
			"resourceDelta": delta,
		},
	}
]

rightsizing := [entry[2] | some entry in sort(guarded_items)]

rightsizing_reasons contains msg if {
	some i, item in proposed_items
	not well_formed(item)
	msg := sprintf("rightsizing item %d dropped: not {resourceid, metricname, unit, optimization{from, to, resourceDelta}}", [i])
}

rightsizing_reasons contains msg if {
	some item in proposed_items
	well_formed(item)
	delta := item.optimization.resourceDelta
	delta < floor_delta
	msg := sprintf(
		"%s %s: resourceDelta %v clamped to %v (max_reduction_percent %v)",
		[item.resourceid, item.metricname, delta, floor_delta, max_reduction],
	)
}

rightsizing_reasons contains msg if {
	some item in proposed_items
	well_formed(item)
	delta := clamped(item.optimization.resourceDelta)
	abs(delta) < min_abs_delta
	msg := sprintf(
		"%s %s: resourceDelta %v dropped (|resourceDelta| < min_abs_delta %v)",
		[item.resourceid, item.metricname, delta, min_abs_delta],
	)
}

rightsizing_reasons contains msg if {
	proposed_placement
	msg := sprintf("placement is only decided on CREATE: ignored on %s", [operation])
}

# ------------------------------------------------------------------ placement (CREATE)

placement_fields := {"region", "start", "mean_intensity", "baseline_intensity", "source", "message"}

placement_refusals contains msg if {
	p := proposed_placement
	not p.region in allowed_regions
	msg := sprintf("placement in %v refused: not among the composition's allowed regions %v", [object.get(p, "region", null), allowed_regions])
}

placement_refusals contains msg if {
	p := proposed_placement
	count(global_regions) > 0
	not p.region in global_regions
	msg := sprintf("placement in %v refused: not in finops.config.regions %v", [object.get(p, "region", null), global_regions])
}

placement_refusals contains msg if {
	p := proposed_placement
	not valid_start(p)
	msg := sprintf("placement in %v refused: start %v is not an RFC 3339 time", [object.get(p, "region", null), object.get(p, "start", null)])
}

placement_refusals contains msg if {
	p := proposed_placement
	is_number(p.mean_intensity)
	is_number(p.baseline_intensity)
	p.mean_intensity > p.baseline_intensity
	msg := sprintf(
		"placement in %v refused: mean intensity %v is above the baseline %v",
		[p.region, p.mean_intensity, p.baseline_intensity],
	)
}

# The engine may run with strict builtin errors: only a string shaped like RFC 3339 reaches the parser.
rfc3339 := `^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$`

valid_start(p) if {
	is_string(p.start)
	regex.match(rfc3339, p.start)
	time.parse_rfc3339_ns(p.start)
}

placement := object.filter(p, placement_fields) if {
	wants_placement
	p := proposed_placement
	count(placement_refusals) == 0
} else := null

placement_reasons contains msg if {
	some msg in placement_refusals
}

placement_reasons contains "no placement proposal: nothing to write on CREATE" if {
	not proposed_placement
}

placement_reasons contains msg if {
	n := count(proposed_items)
	n > 0
	msg := sprintf("rightsizing is only decided on UPDATE and PING: %d proposals ignored on CREATE", [n])
}

# ------------------------------------------------------------------ the decision

default mutate := false

# Like Krateo, a successful evaluation on UPDATE writes the list even when it is empty ("[]").
mutate if wants_rightsizing

mutate if {
	wants_placement
	placement != null
}

decided_rightsizing := rightsizing if wants_rightsizing else := null

reasons contains msg if {
	some msg in not_applying
}

reasons contains msg if {
	wants_rightsizing
	some msg in rightsizing_reasons
}

reasons contains msg if {
	wants_placement
	some msg in placement_reasons
}

decision := {
	"mutate": mutate,
	"rightsizing": decided_rightsizing,
	"placement": placement,
	"reasons": sort(reasons),
}
