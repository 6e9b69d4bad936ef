package postgres

import (
	"testing"
	"testing/fstest"
)

// deferredSQL sets a trap: a deferred constraint trigger fires at COMMIT, and records the user it runs
// as. The host resets the role before writing the outbox and the migration record, so without care
// the trigger would run as the privileged user.
const deferredSQL = `
CREATE TABLE who (u text NOT NULL);
CREATE TABLE bait (a int);
CREATE FUNCTION record_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO who (u) VALUES (current_user);
	RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER late AFTER INSERT ON bait DEFERRABLE INITIALLY DEFERRED
	FOR EACH ROW EXECUTE FUNCTION record_user();
INSERT INTO bait VALUES (1);
`

func TestDeferredTriggersRunAsThePlugin(t *testing.T) {
	db := openDB(t)
	ctx := testCtx(t)
	plugin := pluginName("deferred")
	if _, err := Migrate(ctx, db, plugin, fstest.MapFS{"0001_trap.sql": {Data: []byte(deferredSQL)}}); err != nil {
		t.Fatal(err)
	}
	p, err := EnsurePlugin(ctx, db, plugin)
	if err != nil {
		t.Fatal(err)
	}
	tx := begin(t, p, "A")
	mustExec(t, tx, `INSERT INTO bait VALUES (2)`)
	if err := tx.Commit(ctx, []OutboxEvent{{Topic: "deferred." + runID}}); err != nil {
		t.Fatal(err)
	}
	tx = begin(t, p, "A")
	defer tx.Rollback(ctx) //nolint:errcheck // always nil
	res := mustQuery(t, tx, `SELECT u FROM who`)
	if len(res.Rows) != 2 {
		t.Fatalf("trigger fired %d times, want 2 (migration, commit)", len(res.Rows))
	}
	for i, row := range res.Rows {
		if row[0] != p.Role() {
			t.Errorf("deferred trigger %d ran as %v, want the plugin role %s", i+1, row[0], p.Role())
		}
	}
}
