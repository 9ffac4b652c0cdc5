// What Go's encoding/json writes for kserve-controller's Contract, for the differential test
// tests/test_inference_contract_is_byte_for_byte_krateos.py (run with `go run main.go`, standard
// library only). Each line of stdin is one JSON case; each line of stdout is Go's answer.
//
//	{"value": V}                         -> V read as the controller reads an unstructured object
//	                                        (numbers: int64 when they fit, else float64) and marshalled
//	{"run": R, "config": C, "jobName": N} -> the ContractSpec built from them and marshalled, the
//	                                        provider objects going through the same unstructured
//	                                        round trip as RawExtension values (FromUnstructured)
//
// A case Go refuses answers {"error": "..."}.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

type kserveSpec struct {
	ModelName      string `json:"modelName,omitempty"`
	ModelUrl       string `json:"modelUrl,omitempty"`
	ModelVersion   string `json:"modelVersion,omitempty"`
	ModelInputName string `json:"modelInputName,omitempty"`
}

type contractSpec struct {
	JobId      string                     `json:"jobId,omitempty"`
	JobName    string                     `json:"jobName,omitempty"`
	KServe     kserveSpec                 `json:"kserve"`
	Input      map[string]json.RawMessage `json:"input,omitempty"`
	Output     map[string]json.RawMessage `json:"output,omitempty"`
	Parameters *map[string]string         `json:"parameters,omitempty"`
}

type runDoc struct {
	Metadata struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"metadata"`
	Spec struct {
		Parameters *map[string]string `json:"parameters,omitempty"`
	} `json:"spec"`
}

type configDoc struct {
	Spec struct {
		KServe  kserveSpec `json:"kserve"`
		Storage struct {
			Input  map[string]json.RawMessage `json:"input"`
			Output map[string]json.RawMessage `json:"output"`
		} `json:"storage"`
	} `json:"spec"`
}

// unstructured decodes like k8s.io/apimachinery's JSON for unstructured objects.
func unstructured(raw []byte) (interface{}, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v interface{}
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return numbers(v)
}

func numbers(v interface{}) (interface{}, error) {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i, nil
		}
		return t.Float64()
	case map[string]interface{}:
		for k, item := range t {
			converted, err := numbers(item)
			if err != nil {
				return nil, err
			}
			t[k] = converted
		}
	case []interface{}:
		for i, item := range t {
			converted, err := numbers(item)
			if err != nil {
				return nil, err
			}
			t[i] = converted
		}
	}
	return v, nil
}

// providers re-encodes each provider object as FromUnstructured does for a RawExtension.
func providers(in map[string]json.RawMessage) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	for label, raw := range in {
		value, err := unstructured(raw)
		if err != nil {
			return nil, err
		}
		encoded, err := json.Marshal(value)
		if err != nil {
			return nil, err
		}
		out[label] = encoded
	}
	return out, nil
}

func answer(line []byte) ([]byte, error) {
	var c struct {
		Value   json.RawMessage `json:"value"`
		Run     json.RawMessage `json:"run"`
		Config  json.RawMessage `json:"config"`
		JobName string          `json:"jobName"`
	}
	if err := json.Unmarshal(line, &c); err != nil {
		return nil, err
	}
	if c.Value != nil {
		value, err := unstructured(c.Value)
		if err != nil {
			return nil, err
		}
		return json.Marshal(value)
	}
	var run runDoc
	var config configDoc
	if err := json.Unmarshal(c.Run, &run); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(c.Config, &config); err != nil {
		return nil, err
	}
	input, err := providers(config.Spec.Storage.Input)
	if err != nil {
		return nil, err
	}
	output, err := providers(config.Spec.Storage.Output)
	if err != nil {
		return nil, err
	}
	return json.Marshal(contractSpec{
		JobId: run.Metadata.UID, JobName: c.JobName, KServe: config.Spec.KServe,
		Input: input, Output: output, Parameters: run.Spec.Parameters,
	})
}

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<26)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for scanner.Scan() {
		got, err := answer(scanner.Bytes())
		if err != nil {
			got, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		fmt.Fprintf(out, "%s\n", got)
	}
}
