package runtime

import (
	"context"
	"testing"

	"github.com/keelhq/keel/abi/wire"
)

func BenchmarkScratchGuestGet(b *testing.B) {
	e := newEngine(b, nil)
	p := load(b, e, "plugins/master-data", nil)
	id := "6f1c1d3e-8a51-4a57-9c55-0e0c7a1f4c11"
	sqlText := "SELECT id, code, name, email, phone, country, currency, tax_id, credit_limit, status, notes, version, created_at, updated_at FROM customers WHERE id = $1 AND deleted_at IS NULL"
	in, _ := wire.AppendSQLRequest(nil, &wire.SQLRequest{SQL: sqlText, Params: []any{id}, JSON: true})
	obj := []byte(`{"id":"` + id + `","code":"C-1","name":"Ada Lovelace","email":"ada@example.com","phone":"+44 20 7946 0000","country":"GB","currency":"GBP","tax_id":"GB123456789","credit_limit":1500.5,"status":"active","notes":"Analytical engine account","version":1,"created_at":"2026-12-04T18:00:00.123456Z","updated_at":"2026-12-04T18:00:00.123456Z"}`)
	cols := []wire.Column{}
	for _, c := range []string{"id", "code", "name", "email", "phone", "country", "currency", "tax_id", "credit_limit", "status", "notes", "version", "created_at", "updated_at"} {
		cols = append(cols, wire.Column{Name: c, Type: "text"})
	}
	out, _ := wire.AppendSQLResult(nil, &wire.SQLResult{Columns: cols, JSONRows: [][]byte{obj}})
	req := &wire.HTTPRequest{Method: "GET", Path: "/customers/" + id, Route: "/customers/:id",
		Params:  []wire.KV{{Name: "id", Value: id}},
		Headers: []wire.KV{{Name: "host", Value: "127.0.0.1"}, {Name: "user-agent", Value: "keelbench"}, {Name: "x-tenant-id", Value: "acme"}, {Name: "authorization", Value: "Bearer eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiYWRtaW4iOnRydWUsImlhdCI6MTUxNjIzOTAyMn0.abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdef"}},
		Ctx: wire.CallContext{RequestID: "bench", Tenant: "acme", Subject: "bench",
			Permissions: []string{"master-data.customer.read", "master-data.customer.write"}},
		Prefetch: in, PrefetchResult: out}
	buf := make([]byte, 0, 4096)
	ctx := context.Background()
	call := func() {
		var resp wire.HTTPResponse
		err := p.invoke(ctx, exHTTP, &req.Ctx, true, func(cc *wire.CallContext) []byte {
			return wire.AppendHTTPRequest(buf[:0], req)
		}, func(o []byte) (bool, bool, error) {
			if err := wire.DecodeHTTPResponse(o, &resp); err != nil {
				return false, false, err
			}
			return true, false, nil
		})
		if err != nil || resp.Status != 200 {
			b.Fatal(err, resp.Status, string(resp.Body))
		}
	}
	call()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		call()
	}
}
