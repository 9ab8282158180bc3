package jsonstream

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// Matches JSON.stringify(JSON.parse(s), null, 2) for the shapes exports use.
func TestIndentMatchesJSONStringify(t *testing.T) {
	for in, want := range map[string]string{
		`[]`:                         `[]`,
		`{}`:                         `{}`,
		`[{"a":1,"b":[1,2],"c":{}}]`: "[\n  {\n    \"a\": 1,\n    \"b\": [\n      1,\n      2\n    ],\n    \"c\": {}\n  }\n]",
		`[{"t":"é\u0001\"","n":null,"x":true,"y":false,"e":[]}]`: "[\n  {\n    \"t\": \"é\\u0001\\\"\",\n    \"n\": null,\n    \"x\": true,\n    \"y\": false,\n    \"e\": []\n  }\n]",
		`[1.50,12345678901234567890]`:                            "[\n  1.50,\n  12345678901234567890\n]",
	} {
		var out bytes.Buffer
		if err := Indent(&out, strings.NewReader(in), "  "); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if out.String() != want {
			t.Errorf("%s:\n got %q\nwant %q", in, out.String(), want)
		}
	}
}

func TestIndentAgreesWithEncodingJSON(t *testing.T) {
	in := `{"rows":[{"id":"p1","tags":["a","b"],"meta":{"k":{"z":[]}},"n":3}],"empty":[],"obj":{"a":{}}}`
	var want bytes.Buffer
	if err := json.Indent(&want, []byte(in), "", "  "); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := Indent(&got, strings.NewReader(in), "  "); err != nil {
		t.Fatal(err)
	}
	if got.String() != want.String() {
		t.Fatalf("got\n%s\nwant\n%s", got.String(), want.String())
	}
}
