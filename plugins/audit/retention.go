package main

import (
	"fmt"
	"strconv"
	"time"

	keel "github.com/keelhq/keel/abi/sdk"
)

// autoArchiveBatch bounds the records one automatic run moves, so that the event
// that triggers it stays a short invocation; a backlog is worked off by the next
// events (the check stays due until nothing old is left).
const autoArchiveBatch = 1000

// retentionResult is what one retention run did.
type retentionResult struct {
	Days       int
	Archived   int64
	ThroughSeq int64  // the archive checkpoint after the run
	Cutoff     string // RFC 3339; empty when nothing was examined
	More       bool   // old records remain beyond the run's limit
}

// archiveOld moves the tenant's records older than s.retentionDays into archive,
// oldest first, as one contiguous prefix of the chain, at most limit of them. A run
// that moves something records itself in the trail (action audit.archive.run, by
// actor, under requestID). It must run inside the invocation's transaction: it locks
// the tenant's chain head, so appends and verifications wait until the move commits.
func archiveOld(s *settings, limit int64, actor, requestID, trigger string) (retentionResult, error) {
	res := retentionResult{Days: s.retentionDays}
	// FOR UPDATE: appends and verifications of this tenant wait until the move commits.
	head, ok, err := readHead("FOR UPDATE")
	if err != nil {
		return res, fmt.Errorf("lock chain head: %w", err)
	}
	res.ThroughSeq = head.archivedSeq
	if !ok {
		return res, nil
	}
	// The archive must stay a prefix of the chain: stop at the first record that is
	// not old enough, even if later ones are (events can arrive out of time order).
	b, err := keel.DB.Query(`SELECT coalesce(min(seq), $2) AS boundary, now() - $1::int * interval '1 day' AS cutoff
		FROM records WHERE at >= now() - $1::int * interval '1 day'`, int64(s.retentionDays), head.lastSeq+1)
	if err != nil {
		return res, fmt.Errorf("find boundary: %w", err)
	}
	boundary := b.Row(0).Int("boundary")
	res.Cutoff = b.Row(0).Time("cutoff").UTC().Format(time.RFC3339)
	upTo := min(boundary-1, head.archivedSeq+limit)
	if upTo <= head.archivedSeq {
		return res, nil
	}
	moved, err := keel.DB.Query(`WITH moved AS (
			INSERT INTO archive (`+recordColumns+`, created_at)
			SELECT `+recordColumns+`, created_at FROM records WHERE seq > $1 AND seq <= $2 ORDER BY seq
			RETURNING seq, hash)
		SELECT (SELECT count(*) FROM moved) AS n, seq, hash FROM moved ORDER BY seq DESC LIMIT 1`, head.archivedSeq, upTo)
	if err != nil {
		return res, fmt.Errorf("copy to archive: %w", err)
	}
	if moved.Len() == 0 {
		return res, nil
	}
	n, lastSeq, lastHash := moved.Row(0).Int("n"), moved.Row(0).Int("seq"), moved.Row(0).String("hash")
	if lastSeq != upTo || n != upTo-head.archivedSeq {
		return res, fmt.Errorf("copied %d records ending at %d, want %d ending at %d", n, lastSeq, upTo-head.archivedSeq, upTo)
	}
	// The delete trigger lets each row go only because its identical copy is in archive.
	if d, err := keel.DB.Exec(`DELETE FROM records WHERE seq > $1 AND seq <= $2`, head.archivedSeq, upTo); err != nil {
		return res, fmt.Errorf("remove archived records: %w", err)
	} else if d != n {
		return res, fmt.Errorf("removed %d live records, archived %d", d, n)
	}
	if _, err := keel.DB.Exec(`UPDATE chain_heads SET archived_seq = $1, archived_hash = $2, updated_at = now()`, lastSeq, lastHash); err != nil {
		return res, fmt.Errorf("move checkpoint: %w", err)
	}
	// The run itself goes into the trail (it is delivered back to this plugin).
	if _, err := keel.Events.Publish(trailTopic, "audit.archive.run", map[string]any{
		"action": "audit.archive.run", "actor": actor, "resource": "audit/archive", "request_id": requestID,
		"detail": map[string]any{"archived": n, "from_seq": head.archivedSeq + 1, "through_seq": lastSeq,
			"retention_days": s.retentionDays, "trigger": trigger},
	}); err != nil {
		return res, fmt.Errorf("audit event: %w", err)
	}
	_ = keel.M("archived_total").Add(float64(n))
	res.Archived, res.ThroughSeq, res.More = n, lastSeq, upTo < boundary-1
	return res, nil
}

// runRetention answers POST /retention/run: one retention run for the caller's
// tenant, at most ?limit= (default and maximum 10000) records; "more" says whether to
// call again. See README.md for why the chain stays verifiable.
func runRetention(r *keel.Request) *keel.Response {
	limit := int64(maxArchive)
	if s := r.Query().Get("limit"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > maxArchive {
			return fieldError(r, "limit", fmt.Sprintf("want a whole number from 1 to %d", maxArchive))
		}
		limit = n
	}
	s, err := readSettings()
	if err != nil {
		return keel.Error(500, "invalid_setting", err.Error())
	}
	if s.retentionDays == 0 {
		return keel.JSON(200, map[string]any{"retention_days": 0, "archived": 0, "more": false, "disabled": true})
	}
	res, err := archiveOld(s, limit, r.Call().Subject(), r.Call().RequestID(), "request")
	if err != nil {
		return internal("retention", err)
	}
	out := map[string]any{"retention_days": res.Days, "archived": res.Archived, "archived_through_seq": res.ThroughSeq, "more": res.More}
	if res.Cutoff != "" {
		out["cutoff"] = res.Cutoff
	}
	return keel.JSON(200, out)
}

// retentionActor is the actor of automatic runs in the trail.
const retentionActor = "audit:retention"

// maybeArchive runs retention for the event's tenant when its retention_every has
// passed since the last automatic run, inside the event's invocation (the chain head
// is already locked by the append). due comes from the append's own head update, so
// deciding costs no extra statement. The check is moved forward only once nothing old
// is left, so a backlog is archived autoArchiveBatch records per event.
func maybeArchive(s *settings, due bool, requestID string) error {
	if !due || s.retentionDays == 0 || s.retentionEvery == 0 {
		return nil
	}
	res, err := archiveOld(s, autoArchiveBatch, retentionActor, requestID, "schedule")
	if err != nil {
		return fmt.Errorf("automatic retention: %w", err)
	}
	if res.More {
		return nil
	}
	if _, err := keel.DB.Exec(`UPDATE chain_heads SET retention_checked_at = now()`); err != nil {
		return fmt.Errorf("automatic retention: record the run: %w", err)
	}
	if res.Archived > 0 {
		keel.Log.Info("automatic retention archived records", "archived", res.Archived, "through_seq", res.ThroughSeq)
	}
	return nil
}
