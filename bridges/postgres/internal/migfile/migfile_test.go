package migfile

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		name    string
		version int64
		desc    string
		ok      bool
	}{
		{"0001_init.sql", 1, "init", true},
		{"0042_add-index_2.sql", 42, "add-index_2", true},
		{"7_x.sql", 7, "x", true},
		{"000000000000000010_big.sql", 10, "big", true},
		{"0000_zero.sql", 0, "", false},
		{"0001.sql", 0, "", false},
		{"0001_.sql", 0, "", false},
		{"_init.sql", 0, "", false},
		{"0001_init.SQL", 0, "", false},
		{"0001_init.sql.bak", 0, "", false},
		{"00a1_init.sql", 0, "", false},
		{"0001_in it.sql", 0, "", false},
		{"0001_in/it.sql", 0, "", false},
		{"-001_init.sql", 0, "", false},
		{"+001_init.sql", 0, "", false},
		{"9999999999999999999_overflow.sql", 0, "", false},
		{"0001_" + strings.Repeat("a", 101) + ".sql", 0, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, d, err := ParseName(tt.name)
			if tt.ok != (err == nil) {
				t.Fatalf("ParseName(%q) error = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if !tt.ok {
				if !errors.Is(err, ErrBadName) {
					t.Fatalf("error %v does not wrap ErrBadName", err)
				}
				return
			}
			if v != tt.version || d != tt.desc {
				t.Fatalf("ParseName(%q) = %d, %q; want %d, %q", tt.name, v, d, tt.version, tt.desc)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	src := fstest.MapFS{
		"0010_ten.sql":   {Data: []byte("select 10")},
		"0002_two.sql":   {Data: []byte("select 2")},
		"0001_one.sql":   {Data: []byte("select 1")},
		"README.md":      {Data: []byte("ignored")},
		"sub/0003_x.sql": {Data: []byte("ignored too")},
	}
	files, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Name)
	}
	if want := "0001_one.sql,0002_two.sql,0010_ten.sql"; strings.Join(got, ",") != want {
		t.Fatalf("order = %v, want %s", got, want)
	}
	if files[0].Checksum != Checksum([]byte("select 1")) || len(files[0].Checksum) != 64 {
		t.Fatalf("checksum = %q", files[0].Checksum)
	}

	_, err = Load(fstest.MapFS{"0001_a.sql": {}, "1_b.sql": {}})
	if err == nil || !strings.Contains(err.Error(), "share version 1") {
		t.Fatalf("duplicate versions: err = %v", err)
	}
	_, err = Load(fstest.MapFS{"01_a.sql": {}, "init.sql": {}})
	if !errors.Is(err, ErrBadName) || !strings.Contains(err.Error(), "init.sql") {
		t.Fatalf("bad name: err = %v", err)
	}
}

// FuzzParseName checks that ParseName never panics and that every accepted name is canonical:
// it rebuilds exactly from its parts and its version is the decimal value of its digits.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"0001_init.sql", "1_a.sql", "0000_zero.sql", "x.sql", "", "0001_\x00.sql", "99999999999999999999_a.sql"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		v, desc, err := ParseName(name)
		if err != nil {
			if !errors.Is(err, ErrBadName) {
				t.Fatalf("error %v does not wrap ErrBadName", err)
			}
			return
		}
		if v <= 0 {
			t.Fatalf("accepted non-positive version %d for %q", v, name)
		}
		digits, rest, _ := strings.Cut(name, "_")
		if rest != desc+Ext {
			t.Fatalf("description %q does not rebuild %q", desc, name)
		}
		n, perr := strconv.ParseInt(digits, 10, 64)
		if perr != nil || n != v {
			t.Fatalf("version %d does not match digits %q", v, digits)
		}
		for _, r := range desc {
			if r > 0x7f {
				t.Fatalf("accepted non-ASCII description %q", desc)
			}
		}
	})
}
