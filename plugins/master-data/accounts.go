package main

import keel "github.com/keelhq/keel/abi/sdk"

// checkAccount validates an account's place in the chart of accounts: the parent must
// be a live account of the same tenant (row-level security hides the others) and of
// the same type, and the tree must stay a tree. The parent row is locked FOR SHARE,
// so a concurrent delete of the parent waits for this change and then sees the child.
func checkAccount(e *entity, id string, cur, vals map[string]any) (map[string]string, error) {
	get := func(k string) any {
		if v, ok := vals[k]; ok {
			return v
		}
		return cur[k]
	}
	_, parentChanged := vals["parent_id"]
	_, typeChanged := vals["type"]
	if cur != nil && !parentChanged && !typeChanged {
		return nil, nil
	}
	bad := map[string]string{}
	typ, _ := get("type").(string)
	if parent, _ := get("parent_id").(string); parent != "" {
		rows, err := keel.DB.Query(`SELECT type FROM accounts WHERE id = $1 AND deleted_at IS NULL FOR SHARE`, parent)
		switch {
		case err != nil:
			return nil, err
		case parent == id:
			bad["parent_id"] = "cannot be the account itself"
		case rows.Len() == 0:
			bad["parent_id"] = "must be the id of an existing account"
		case rows.Row(0).String("type") != typ:
			bad["parent_id"] = "must be an account of the same type (" + rows.Row(0).String("type") + ")"
		case id != "" && parentChanged:
			// Walk up from the new parent: meeting this account would close a cycle.
			up, err := keel.DB.Query(`WITH RECURSIVE up (id, parent_id) AS (
				SELECT id, parent_id FROM accounts WHERE id = $1
				UNION SELECT a.id, a.parent_id FROM accounts a JOIN up ON a.id = up.parent_id)
				SELECT 1 AS hit FROM up WHERE id = $2 LIMIT 1`, parent, id)
			if err != nil {
				return nil, err
			}
			if up.Len() > 0 {
				bad["parent_id"] = "cannot be one of the account's own sub-accounts"
			}
		}
	}
	if id != "" && typeChanged {
		rows, err := keel.DB.Query(`SELECT 1 AS hit FROM accounts WHERE parent_id = $1 AND deleted_at IS NULL AND type <> $2 LIMIT 1`, id, typ)
		if err != nil {
			return nil, err
		}
		if rows.Len() > 0 {
			bad["type"] = "must stay the type of the account's sub-accounts"
		}
	}
	return bad, nil
}

// accountHasChildren refuses to delete an account that still has live sub-accounts.
// It runs after the delete's UPDATE has locked the row, so a sub-account being added
// concurrently is either seen here or refused by checkAccount.
func accountHasChildren(e *entity, id string) (*keel.Response, error) {
	rows, err := keel.DB.Query(`SELECT 1 AS hit FROM accounts WHERE parent_id = $1 AND deleted_at IS NULL LIMIT 1`, id)
	if err != nil || rows.Len() == 0 {
		return nil, err
	}
	reject(e, "in_use")
	return keel.Error(409, "has_sub_accounts", "the account still has sub-accounts; delete or move them first"), nil
}
