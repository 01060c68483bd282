package unified

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// ext parses relaxed extended JSON into a document value.
func ext(t *testing.T, s string) bson.RawValue {
	t.Helper()
	var raw bson.Raw
	if err := bson.UnmarshalExtJSON([]byte(s), false, &raw); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return bson.RawValue{Type: bson.TypeEmbeddedDocument, Value: raw}
}

// TestMatchRules checks the matcher against the format's rules, one case
// per rule, in both directions where a rule can be broken.
func TestMatchRules(t *testing.T) {
	tests := []struct {
		name      string
		exp, act  string
		root, ok  bool
		entityLit string
	}{
		{"equal", `{"a": 1}`, `{"a": 1}`, true, true, ""},
		{"int equals long and double", `{"a": 1, "b": {"$numberLong": "2"}}`, `{"a": {"$numberLong": "1"}, "b": 2.0}`, true, true, ""},
		{"different numbers", `{"a": 1}`, `{"a": 1.5}`, true, false, ""},
		{"number is not a string", `{"a": 1}`, `{"a": "1"}`, true, false, ""},
		{"extra key at the root", `{"a": 1}`, `{"a": 1, "b": 2}`, true, true, ""},
		{"extra key in an outcome document", `{"a": 1}`, `{"a": 1, "b": 2}`, false, false, ""},
		{"extra key nested", `{"ns": {"db": "d"}}`, `{"ns": {"db": "d", "coll": "c"}}`, true, false, ""},
		{"missing key", `{"a": 1}`, `{"b": 1}`, true, false, ""},
		{"null is not absent", `{"a": null}`, `{}`, true, false, ""},
		{"null matches null", `{"a": null}`, `{"a": null}`, true, true, ""},
		{"arrays element by element", `{"a": [1, {"b": 2}]}`, `{"a": [1, {"b": 2}]}`, true, true, ""},
		{"array length", `{"a": [1]}`, `{"a": [1, 2]}`, true, false, ""},
		{"no extra keys in array documents", `{"a": [{"b": 2}]}`, `{"a": [{"b": 2, "c": 3}]}`, true, false, ""},
		{"exists true", `{"a": {"$$exists": true}}`, `{"a": 5}`, true, true, ""},
		{"exists true, absent", `{"a": {"$$exists": true}}`, `{}`, true, false, ""},
		{"exists false", `{"a": {"$$exists": false}}`, `{}`, true, true, ""},
		{"exists false, present", `{"a": {"$$exists": false}}`, `{"a": null}`, true, false, ""},
		{"exists false nested", `{"ns": {"x": {"$$exists": false}, "db": "d"}}`, `{"ns": {"db": "d"}}`, true, true, ""},
		{"type", `{"a": {"$$type": "long"}}`, `{"a": {"$numberLong": "3"}}`, true, true, ""},
		{"type mismatch", `{"a": {"$$type": "int"}}`, `{"a": {"$numberLong": "3"}}`, true, false, ""},
		{"type list", `{"a": {"$$type": ["int", "long"]}}`, `{"a": 3}`, true, true, ""},
		{"type of absent", `{"a": {"$$type": "object"}}`, `{}`, true, false, ""},
		{"unsetOrMatches unset", `{"a": {"$$unsetOrMatches": 1}}`, `{}`, true, true, ""},
		{"unsetOrMatches matches", `{"a": {"$$unsetOrMatches": {"$$exists": true}}}`, `{"a": {}}`, true, true, ""},
		{"unsetOrMatches differs", `{"a": {"$$unsetOrMatches": 1}}`, `{"a": 2}`, true, false, ""},
		{"lte", `{"a": {"$$lte": 5}}`, `{"a": 4}`, true, true, ""},
		{"lte over", `{"a": {"$$lte": 5}}`, `{"a": 6}`, true, false, ""},
		{"hex bytes", `{"a": {"$$matchesHexBytes": "0102"}}`, `{"a": {"$binary": {"base64": "AQI=", "subType": "00"}}}`, true, true, ""},
		{"matches entity", `{"a": {"$$matchesEntity": "saved"}}`, `{"a": 7}`, true, true, "7"},
		{"matches entity differs", `{"a": {"$$matchesEntity": "saved"}}`, `{"a": 8}`, true, false, "7"},
		{"matchAsRoot allows extra keys", `{"a": {"$$matchAsRoot": {"b": 1}}}`, `{"a": {"b": 1, "c": 2}}`, true, true, ""},
		{"two-key document is not an operator", `{"a": {"$$exists": true, "b": 1}}`, `{"a": {"$$exists": true, "b": 1}}`, true, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			em := newEntityMap("")
			if tc.entityLit != "" {
				v := ext(t, `{"v": `+tc.entityLit+`}`).Document().Lookup("v")
				if err := em.add("saved", v); err != nil {
					t.Fatal(err)
				}
			}
			m := &matcher{entities: em}
			var err error
			if tc.root {
				err = m.matchRoot(ext(t, tc.exp), ext(t, tc.act))
			} else {
				err = m.matchValue(ext(t, tc.exp), ext(t, tc.act))
			}
			if tc.ok && err != nil {
				t.Errorf("expected a match, got %v", err)
			}
			if !tc.ok && err == nil {
				t.Errorf("expected no match")
			}
		})
	}
}

// TestRequirements checks runOnRequirements: versions compare component by
// component and a list is met when any entry is.
func TestRequirements(t *testing.T) {
	si := serverInfo{version: []int{8, 0, 4}, versionStr: "8.0.4", topology: "replicaset"}
	cases := []struct {
		reqs []runOn
		met  bool
	}{
		{nil, true},
		{[]runOn{{MinServerVersion: "3.6"}}, true},
		{[]runOn{{MinServerVersion: "8.0.5"}}, false},
		{[]runOn{{MaxServerVersion: "4.2.99"}}, false},
		{[]runOn{{MaxServerVersion: "8.0"}}, false},
		{[]runOn{{MaxServerVersion: "8.0.4"}}, true},
		{[]runOn{{Topologies: []string{"single"}}}, false},
		{[]runOn{{Topologies: []string{"single"}}, {Topologies: []string{"replicaset"}}}, true},
		{[]runOn{{Serverless: "require"}}, false},
		{[]runOn{{Serverless: "forbid"}}, true},
	}
	for i, c := range cases {
		if got := unmetAll(c.reqs, si) == ""; got != c.met {
			t.Errorf("case %d %+v: met = %v, want %v", i, c.reqs, got, c.met)
		}
	}
}
