package main

// The four entities. Each is described once here; the handlers, the validation, the
// list queries and the events are derived from the description, so the entities
// behave alike. Table and column names below are constants of this file, never
// request input: they are the only text spliced into SQL, values are always bound.

var statusActive = []string{"active", "inactive"}

var customers = &entity{
	name:   "customer",
	plural: "customers",
	fields: []field{
		{name: "code", kind: kCode, required: true, max: 64},
		{name: "name", kind: kText, required: true, max: 200},
		{name: "email", kind: kEmail, max: 254},
		{name: "phone", kind: kPhone, max: 32},
		{name: "country", kind: kCountry},
		{name: "currency", kind: kCurrency},
		{name: "tax_id", kind: kText, max: 64},
		{name: "credit_limit", kind: kDecimal, digits: 15, scale: 2},
		{name: "status", kind: kEnum, enum: []string{"active", "inactive", "blocked"}, def: "active"},
		{name: "notes", kind: kText, max: 4000, multiline: true},
	},
	search:  []string{"code", "name", "email"},
	filters: []string{"status", "country", "currency"},
}

var vendors = &entity{
	name:   "vendor",
	plural: "vendors",
	fields: []field{
		{name: "code", kind: kCode, required: true, max: 64},
		{name: "name", kind: kText, required: true, max: 200},
		{name: "email", kind: kEmail, max: 254},
		{name: "phone", kind: kPhone, max: 32},
		{name: "country", kind: kCountry},
		{name: "currency", kind: kCurrency},
		{name: "tax_id", kind: kText, max: 64},
		{name: "payment_terms_days", kind: kInt, min: 0, maxInt: 365, def: int64(30)},
		{name: "status", kind: kEnum, enum: []string{"active", "inactive", "blocked"}, def: "active"},
		{name: "notes", kind: kText, max: 4000, multiline: true},
	},
	search:  []string{"code", "name", "email"},
	filters: []string{"status", "country", "currency"},
}

var products = &entity{
	name:   "product",
	plural: "products",
	fields: []field{
		{name: "code", kind: kCode, required: true, max: 64},
		{name: "name", kind: kText, required: true, max: 200},
		{name: "description", kind: kText, max: 4000, multiline: true},
		{name: "category", kind: kText, max: 100},
		{name: "unit", kind: kText, max: 16, def: "ea"},
		{name: "price", kind: kDecimal, digits: 15, scale: 4},
		{name: "currency", kind: kCurrency},
		{name: "status", kind: kEnum, enum: []string{"active", "inactive", "discontinued"}, def: "active"},
	},
	search:  []string{"code", "name"},
	filters: []string{"status", "category", "currency"},
}

var accounts = &entity{
	name:   "account",
	plural: "accounts",
	fields: []field{
		{name: "code", kind: kCode, required: true, max: 64},
		{name: "name", kind: kText, required: true, max: 200},
		{name: "type", kind: kEnum, required: true, enum: []string{"asset", "liability", "equity", "revenue", "expense"}},
		{name: "parent_id", kind: kRef},
		{name: "currency", kind: kCurrency},
		{name: "description", kind: kText, max: 4000, multiline: true},
		{name: "status", kind: kEnum, enum: statusActive, def: "active"},
	},
	search:   []string{"code", "name"},
	filters:  []string{"status", "type", "parent_id"},
	check:    checkAccount,
	onDelete: accountHasChildren,
}

var entities = []*entity{customers, vendors, products, accounts}
