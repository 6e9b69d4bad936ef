package hostaudit

import (
	"testing"
	"unsafe"
)

// TestRecordCopiesStrings: a record built from views into a buffer (what fiber's
// c.Path, c.Params and c.IP return) must not change when the buffer is reused for the
// next request before the record is written.
func TestRecordCopiesStrings(t *testing.T) {
	buf := []byte("POST /admin/api/plugins/example/activate 10.0.0.1 rid-1")
	view := func(from, to int) string { return unsafe.String(&buf[from], to-from) }
	rec := Record{
		Action: view(0, 4), Actor: view(41, 49), Resource: view(5, 40), RequestID: view(50, 55),
		Detail: map[string]any{"ip": view(41, 49), "path": []string{view(5, 40)},
			"nested": map[string]any{"rid": view(50, 55)}, "hdr": map[string]string{view(0, 4): view(50, 55)}, "status": 200},
	}
	c := rec.clone()
	for i := range buf {
		buf[i] = 'x'
	}
	nested := c.Detail["nested"].(map[string]any)
	hdr := c.Detail["hdr"].(map[string]string)
	if c.Action != "POST" || c.Resource != "/admin/api/plugins/example/activate" || c.Actor != "10.0.0.1" || c.RequestID != "rid-1" ||
		c.Detail["ip"] != "10.0.0.1" || c.Detail["path"].([]string)[0] != "/admin/api/plugins/example/activate" ||
		nested["rid"] != "rid-1" || hdr["POST"] != "rid-1" || c.Detail["status"] != 200 {
		t.Fatalf("the copy changed with the buffer: %+v", c)
	}
}
