package main

import (
	"encoding/json"
	"regexp"
	"testing"
)

func TestFieldValidation(t *testing.T) {
	for _, tc := range []struct {
		f    field
		in   string
		want any    // stored value when valid
		msg  string // error message when not
	}{
		{field{name: "code", kind: kCode, required: true, max: 64}, `"C-001"`, "C-001", ""},
		{field{name: "code", kind: kCode, required: true, max: 64}, `" C/1.a_b "`, "C/1.a_b", ""},
		{field{name: "code", kind: kCode, required: true, max: 64}, `"-x"`, nil, "must start with a letter or digit and contain only letters, digits, '.', '_', '/' and '-'"},
		{field{name: "code", kind: kCode, required: true, max: 64}, `null`, nil, "is required"},
		{field{name: "code", kind: kCode, required: true, max: 64}, `""`, nil, "is required"},
		{field{name: "code", kind: kCode, required: true, max: 3}, `"ABCD"`, nil, "must be at most 3 characters"},
		{field{name: "name", kind: kText, max: 10}, `12`, nil, "must be a string"},
		{field{name: "name", kind: kText, max: 10}, `"a\u0000b"`, nil, "must not contain control characters"},
		{field{name: "notes", kind: kText, max: 10, multiline: true}, `"a\nb"`, "a\nb", ""},
		{field{name: "name", kind: kText, max: 10}, `"a\nb"`, nil, "must not contain control characters"},
		{field{name: "email", kind: kEmail, max: 254}, `"ap@acme.example"`, "ap@acme.example", ""},
		{field{name: "email", kind: kEmail, max: 254}, `""`, nil, ""},
		{field{name: "email", kind: kEmail, max: 254}, `"a@b"`, nil, "must be a valid email address"},
		{field{name: "email", kind: kEmail, max: 254}, `"Ann <a@b.com>"`, nil, "must be a valid email address"},
		{field{name: "email", kind: kEmail, max: 254}, `"a b@c.com"`, nil, "must be a valid email address"},
		{field{name: "phone", kind: kPhone, max: 32}, `"+49 (30) 123-45"`, "+49 (30) 123-45", ""},
		{field{name: "phone", kind: kPhone, max: 32}, `"call me"`, nil, "must be a phone number: digits, spaces, '(', ')', '.', '-' and an optional leading '+'"},
		{field{name: "country", kind: kCountry}, `"de"`, "DE", ""},
		{field{name: "country", kind: kCountry}, `"XX"`, nil, "must be an ISO 3166-1 alpha-2 country code such as DE or US"},
		{field{name: "currency", kind: kCurrency}, `"eur"`, "EUR", ""},
		{field{name: "currency", kind: kCurrency}, `"EURO"`, nil, "must be an ISO 4217 currency code such as EUR or USD"},
		{field{name: "status", kind: kEnum, enum: []string{"active", "inactive"}}, `"inactive"`, "inactive", ""},
		{field{name: "status", kind: kEnum, enum: []string{"active", "inactive"}}, `"Active"`, nil, "must be one of active, inactive"},
		{field{name: "days", kind: kInt, min: 0, maxInt: 365}, `30`, int64(30), ""},
		{field{name: "days", kind: kInt, min: 0, maxInt: 365}, `30.5`, nil, "must be an integer between 0 and 365"},
		{field{name: "days", kind: kInt, min: 0, maxInt: 365}, `"30"`, nil, "must be an integer"},
		{field{name: "price", kind: kDecimal, digits: 3, scale: 2}, `12.5`, "12.5", ""},
		{field{name: "price", kind: kDecimal, digits: 3, scale: 2}, `"007.25"`, "007.25", ""},
		{field{name: "price", kind: kDecimal, digits: 3, scale: 2}, `-1`, nil, "must be a non-negative number with at most 3 digits before and 2 after the decimal point"},
		{field{name: "price", kind: kDecimal, digits: 3, scale: 2}, `1e2`, nil, "must be a non-negative number with at most 3 digits before and 2 after the decimal point"},
		{field{name: "price", kind: kDecimal, digits: 3, scale: 2}, `1000`, nil, "must be a non-negative number with at most 3 digits before and 2 after the decimal point"},
		{field{name: "price", kind: kDecimal, digits: 3, scale: 2}, `1.234`, nil, "must be a non-negative number with at most 3 digits before and 2 after the decimal point"},
		{field{name: "price", kind: kDecimal, digits: 3, scale: 2}, `true`, nil, "must be a number"},
		{field{name: "parent_id", kind: kRef}, `"0F8FAD5B-D9CB-469F-A165-70867728950E"`, "0f8fad5b-d9cb-469f-a165-70867728950e", ""},
		{field{name: "parent_id", kind: kRef}, `"42"`, nil, "must be an id (a UUID)"},
	} {
		got, msg := tc.f.parse(json.RawMessage(tc.in))
		if msg != tc.msg || msg == "" && got != tc.want {
			t.Errorf("%s %s: (%v, %q), want (%v, %q)", tc.f.name, tc.in, got, msg, tc.want, tc.msg)
		}
	}
}

func TestValuesOnCreateAndUpdate(t *testing.T) {
	var obj map[string]json.RawMessage
	json.Unmarshal([]byte(`{"code":"C1","name":"N","id":"ignored","colour":"red"}`), &obj)
	vals, bad := customers.values(obj, nil)
	if len(bad) != 1 || bad["colour"] == "" || vals["status"] != "active" || vals["email"] != nil {
		t.Fatalf("create: %v %v", vals, bad)
	}
	if _, present := vals["email"]; !present {
		t.Fatal("create must give every field a value")
	}
	obj = nil
	json.Unmarshal([]byte(`{"email":null,"version":3}`), &obj)
	vals, bad = customers.values(obj, map[string]any{"code": "C1"})
	if len(bad) != 0 || len(vals) != 1 || vals["email"] != nil {
		t.Fatalf("update: %v %v", vals, bad)
	}
	obj = nil
	json.Unmarshal([]byte(`{"name":null}`), &obj)
	if _, bad = customers.values(obj, map[string]any{"code": "C1"}); bad["name"] != "is required" {
		t.Fatalf("clearing a required field: %v", bad)
	}
}

func TestSameValue(t *testing.T) {
	dec := customers.field("credit_limit")
	if !sameValue(dec, json.Number("1000.50"), "1000.5") || sameValue(dec, json.Number("1"), "1.01") || sameValue(dec, nil, "0") {
		t.Fatal("decimal comparison")
	}
	if !sameValue(customers.field("name"), "a", "a") || sameValue(customers.field("name"), "a", nil) {
		t.Fatal("string comparison")
	}
}

func TestCursorRoundTrip(t *testing.T) {
	c := cursor{Sort: "created_at", Key: "2026-01-02T03:04:05.123456Z", ID: "0f8fad5b-d9cb-469f-a165-70867728950e"}
	got, ok := decodeCursor(c.encode(), "created_at")
	if !ok || got != c {
		t.Fatalf("round trip: %v %v", got, ok)
	}
	for _, bad := range []string{"", "!!", "bm9wZQ", c.encode() + "x"} {
		if _, ok := decodeCursor(bad, "created_at"); ok {
			t.Errorf("cursor %q accepted", bad)
		}
	}
	if _, ok := decodeCursor(c.encode(), "code"); ok {
		t.Error("a created_at cursor was accepted for the code order")
	}
}

func TestParseVersionAndLike(t *testing.T) {
	for in, want := range map[string]int64{`"3"`: 3, `W/"12"`: 12, `7`: 7, `"0"`: 0, `"x"`: 0, `""`: 0} {
		v, ok := parseVersion(in)
		if ok != (want > 0) || ok && v != want {
			t.Errorf("parseVersion(%s) = %d %v", in, v, ok)
		}
	}
	if got := escapeLike(`50%_off\`); got != `50\%\_off\\` {
		t.Errorf("escapeLike: %s", got)
	}
}

// TestValidUUIDEveryByte puts every byte value at every position of a valid UUID: the
// table lookups must agree with the expression at each of them.
func TestValidUUIDEveryByte(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	base := []byte("3f1c2a4e-1b2c-4d5e-8f90-a1b2c3d4e5f6")
	for i := range base {
		for c := 0; c < 256; c++ {
			s := append([]byte(nil), base...)
			s[i] = byte(c)
			if got, want := validUUID(string(s)), re.Match(s); got != want {
				t.Fatalf("validUUID(%q) = %v, the expression says %v", s, got, want)
			}
		}
	}
}

// FuzzValidUUID holds the table lookups to the regular expression they replaced.
func FuzzValidUUID(f *testing.F) {
	re := regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	for _, s := range []string{"3f1c2a4e-1b2c-4d5e-8f90-a1b2c3d4e5f6", "3F1C2A4E-1B2C-4D5E-8F90-A1B2C3D4E5F6", "3f1c2a4e-1b2c-4d5e-8f90-a1b2c3d4e5f", "3f1c2a4e_1b2c-4d5e-8f90-a1b2c3d4e5f6", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validUUID(s), re.MatchString(s); got != want {
			t.Fatalf("validUUID(%q) = %v, the expression says %v", s, got, want)
		}
	})
}
