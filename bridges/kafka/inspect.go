package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/keelhq/keel/bridges/bus"
)

var _ bus.Inspector = (*Bus)(nil)

// maxPeek bounds one Peek.
const maxPeek = 1000

// partitionRange is the offsets a partition stores: [low, high).
type partitionRange struct {
	partition int
	low, high int64
}

// TopicStats reads the partitions' first and next offsets and each group's committed offsets.
// A group's lag is the sum over partitions of the messages after its committed offset; a group
// that has committed nothing starts where WithStartAtEnd says. Kafka does not know which
// messages a consumer holds without having committed them, so Pending is -1.
func (b *Bus) TopicStats(ctx context.Context, topic string, groups []string) (bus.TopicStats, error) {
	st := bus.TopicStats{Topic: topic, Groups: make([]bus.GroupStats, 0, len(groups))}
	parts, err := b.ranges(ctx, topic, nil)
	if errors.Is(err, bus.ErrNotFound) {
		for _, g := range groups {
			st.Groups = append(st.Groups, bus.GroupStats{Group: g, Pending: -1})
		}
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("kafka: topic stats %s: %w", topic, err)
	}
	st.Exists, st.Partitions = true, len(parts)
	ids := make([]int, len(parts))
	for i, p := range parts {
		st.Messages += p.high - p.low
		ids[i] = p.partition
	}
	for _, g := range groups {
		if err := bus.ValidateName(g); err != nil {
			return st, fmt.Errorf("kafka: topic stats %s: group: %w", topic, err)
		}
		res, err := b.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: g, Topics: map[string][]int{topic: ids}})
		if err == nil {
			err = res.Error
		}
		gs := bus.GroupStats{Group: g, Pending: -1}
		if errors.Is(err, kafka.GroupIdNotFound) {
			// Some brokers say so for a group that never committed, others answer -1.
			res, err = &kafka.OffsetFetchResponse{}, nil
		}
		if err != nil {
			return st, fmt.Errorf("kafka: topic stats %s: offsets of group %s: %w", topic, g, err)
		}
		committed := map[int]int64{}
		for _, p := range res.Topics[topic] {
			if errors.Is(p.Error, kafka.GroupIdNotFound) {
				continue
			}
			if p.Error != nil {
				return st, fmt.Errorf("kafka: topic stats %s: offsets of group %s, partition %d: %w", topic, g, p.Partition, p.Error)
			}
			committed[p.Partition] = p.CommittedOffset
		}
		for _, p := range parts {
			c, ok := committed[p.partition]
			switch {
			case ok && c >= 0:
				gs.Known = true
				gs.Lag += p.high - max(c, p.low) // below low: retention removed what it had not read
			case b.cfg.startOffset == kafka.LastOffset:
			default:
				gs.Lag += p.high - p.low
			}
		}
		st.Groups = append(st.Groups, gs)
	}
	return st, nil
}

// Peek reads the oldest limit messages of every partition and returns the oldest limit of
// them by broker time. Only the oldest message of each partition is Removable.
func (b *Bus) Peek(ctx context.Context, topic string, limit int) ([]bus.Stored, error) {
	limit = min(limit, maxPeek)
	parts, err := b.ranges(ctx, topic, nil)
	if errors.Is(err, bus.ErrNotFound) || limit <= 0 {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kafka: peek %s: %w", topic, err)
	}
	var out []bus.Stored
	for _, p := range parts {
		got, err := b.read(ctx, topic, p, p.low, limit)
		if err != nil {
			return nil, fmt.Errorf("kafka: peek %s: %w", topic, err)
		}
		out = append(out, got...)
	}
	slices.SortStableFunc(out, func(a, b bus.Stored) int { return a.Time.Compare(b.Time) })
	return out[:min(len(out), limit)], nil
}

// Get reads the message at "partition-offset".
func (b *Bus) Get(ctx context.Context, topic, id string) (bus.Stored, error) {
	p, offset, err := b.locate(ctx, topic, id)
	if err != nil {
		return bus.Stored{}, fmt.Errorf("kafka: get %s/%s: %w", topic, id, err)
	}
	got, err := b.read(ctx, topic, p, offset, 1)
	if err != nil {
		return bus.Stored{}, fmt.Errorf("kafka: get %s/%s: %w", topic, id, err)
	}
	if len(got) == 0 || got[0].ID != id {
		// Compaction or a transaction marker left a hole at this offset.
		return bus.Stored{}, fmt.Errorf("kafka: get %s/%s: %w: no record at this offset", topic, id, bus.ErrGone)
	}
	return got[0], nil
}

// Remove deletes the message at "partition-offset" if it is the oldest of its partition, with
// a DeleteRecords request that moves the partition's start past it. Kafka cannot delete a
// record in the middle of a partition: for any other message Remove returns bus.ErrUnsupported
// and changes nothing. Consumers whose committed offset lies below the new start continue
// from the start.
func (b *Bus) Remove(ctx context.Context, topic, id string) error {
	p, offset, err := b.locate(ctx, topic, id)
	if err != nil {
		return fmt.Errorf("kafka: remove %s/%s: %w", topic, id, err)
	}
	if offset > p.low {
		return fmt.Errorf("kafka: remove %s/%s: %w: Kafka deletes only the oldest records of a partition, and %d older message(s) are still stored in partition %d; remove those first",
			topic, id, bus.ErrUnsupported, offset-p.low, p.partition)
	}
	if err := b.deleteRecords(ctx, topic, p.partition, offset+1); err != nil {
		return fmt.Errorf("kafka: remove %s/%s: %w", topic, id, err)
	}
	return nil
}

// locate parses "partition-offset" and checks it against what the partition stores:
// bus.ErrGone below its start, bus.ErrNotFound at or past its end.
func (b *Bus) locate(ctx context.Context, topic, id string) (partitionRange, int64, error) {
	ps, offs, ok := strings.Cut(id, "-")
	partition, perr := strconv.Atoi(ps)
	offset, oerr := strconv.ParseInt(offs, 10, 64)
	if !ok || perr != nil || oerr != nil || partition < 0 || offset < 0 {
		return partitionRange{}, 0, fmt.Errorf("%w: %q is not partition-offset", bus.ErrNotFound, id)
	}
	parts, err := b.ranges(ctx, topic, []int{partition})
	if err != nil {
		return partitionRange{}, 0, err
	}
	if len(parts) == 0 {
		return partitionRange{}, 0, fmt.Errorf("%w: no partition %d", bus.ErrNotFound, partition)
	}
	p := parts[0]
	switch {
	case offset >= p.high:
		return p, 0, fmt.Errorf("%w: offset %d is past the end of partition %d (%d)", bus.ErrNotFound, offset, partition, p.high)
	case offset < p.low:
		return p, 0, fmt.Errorf("%w: offset %d was removed or expired (partition %d starts at %d)", bus.ErrGone, offset, partition, p.low)
	}
	return p, offset, nil
}

// ranges returns the stored offsets of the given partitions of topic, or of all of them when
// only is nil; bus.ErrNotFound when the topic does not exist.
func (b *Bus) ranges(ctx context.Context, topic string, only []int) ([]partitionRange, error) {
	if err := bus.ValidateName(topic); err != nil {
		return nil, err
	}
	md, err := b.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	if len(md.Topics) == 0 || errors.Is(md.Topics[0].Error, kafka.UnknownTopicOrPartition) {
		return nil, fmt.Errorf("%w: no topic %s", bus.ErrNotFound, topic)
	}
	if err := md.Topics[0].Error; err != nil {
		return nil, err
	}
	var req []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		if only == nil || slices.Contains(only, p.ID) {
			req = append(req, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	if len(req) == 0 {
		return nil, nil
	}
	res, err := b.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: req}, IsolationLevel: kafka.ReadCommitted})
	if err != nil {
		return nil, err
	}
	var out []partitionRange
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("partition %d offsets: %w", p.Partition, p.Error)
		}
		out = append(out, partitionRange{partition: p.Partition, low: p.FirstOffset, high: p.LastOffset})
	}
	slices.SortFunc(out, func(a, b partitionRange) int { return a.partition - b.partition })
	return out, nil
}

// read fetches up to n records of partition p from offset on, without a consumer group.
func (b *Bus) read(ctx context.Context, topic string, p partitionRange, offset int64, n int) ([]bus.Stored, error) {
	var out []bus.Stored
	for offset < p.high && len(out) < n {
		res, err := b.client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: p.partition, Offset: offset,
			MinBytes: 1, MaxBytes: 4 << 20, IsolationLevel: kafka.ReadCommitted})
		if err == nil {
			err = res.Error
		}
		if err != nil {
			return out, fmt.Errorf("fetch partition %d at %d: %w", p.partition, offset, err)
		}
		before := offset
		for len(out) < n {
			r, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return out, fmt.Errorf("read partition %d at %d: %w", p.partition, offset, err)
			}
			if r.Offset < offset { // a batch may start before the offset asked for
				continue
			}
			key, kerr := protocol.ReadAll(r.Key)
			value, verr := protocol.ReadAll(r.Value)
			if err := errors.Join(kerr, verr); err != nil {
				return out, fmt.Errorf("read partition %d at %d: %w", p.partition, r.Offset, err)
			}
			m := fromKafka(kafka.Message{Key: key, Value: value, Headers: r.Headers})
			out = append(out, bus.Stored{ID: fmt.Sprintf("%d-%d", p.partition, r.Offset), Message: m, Time: r.Time, Removable: r.Offset == p.low})
			offset = r.Offset + 1
		}
		if offset == before {
			break // nothing readable here (transaction markers only): do not spin
		}
	}
	return out, nil
}

// deleteRecords sends DeleteRecords for one partition to its leader. kafka-go has no client
// call for it, so the request and response are declared below and registered with kafka-go's
// protocol package, which encodes them, negotiates the version and routes the request like its
// own messages.
func (b *Bus) deleteRecords(ctx context.Context, topic string, partition int, before int64) error {
	req := &deleteRecordsRequest{TimeoutMs: 10000, Topics: []deleteRecordsTopic{{Name: topic,
		Partitions: []deleteRecordsPartition{{Partition: int32(partition), Offset: before}}}}}
	ctx, cancel := context.WithTimeout(ctx, b.client.Timeout)
	defer cancel()
	m, err := b.transport.RoundTrip(ctx, b.client.Addr, req)
	if err != nil {
		return fmt.Errorf("delete records: %w", err)
	}
	res, ok := m.(*deleteRecordsResponse)
	if !ok || len(res.Topics) != 1 || len(res.Topics[0].Partitions) != 1 {
		return fmt.Errorf("delete records: unexpected response %T %+v", m, m)
	}
	if code := res.Topics[0].Partitions[0].ErrorCode; code != 0 {
		return fmt.Errorf("delete records: %w", kafka.Error(code))
	}
	return nil
}

func init() { protocol.Register(&deleteRecordsRequest{}, &deleteRecordsResponse{}) }

// deleteRecordsRequest is DeleteRecords v0-v1 (API key 21); v2 only adds flexible encoding.
type deleteRecordsRequest struct {
	Topics    []deleteRecordsTopic `kafka:"min=v0,max=v1"`
	TimeoutMs int32                `kafka:"min=v0,max=v1"`
}

type deleteRecordsTopic struct {
	Name       string                   `kafka:"min=v0,max=v1"`
	Partitions []deleteRecordsPartition `kafka:"min=v0,max=v1"`
}

type deleteRecordsPartition struct {
	Partition int32 `kafka:"min=v0,max=v1"`
	Offset    int64 `kafka:"min=v0,max=v1"`
}

func (*deleteRecordsRequest) ApiKey() protocol.ApiKey { return protocol.DeleteRecords }

// Broker routes the request to the leader of its (single) partition, which must handle it.
func (r *deleteRecordsRequest) Broker(c protocol.Cluster) (protocol.Broker, error) {
	t, p := r.Topics[0].Name, r.Topics[0].Partitions[0].Partition
	part, ok := c.Topics[t].Partitions[p]
	if !ok {
		return protocol.Broker{}, fmt.Errorf("no partition %d of %s in the cluster metadata", p, t)
	}
	leader, ok := c.Brokers[part.Leader]
	if !ok {
		return protocol.Broker{}, fmt.Errorf("no leader for partition %d of %s", p, t)
	}
	return leader, nil
}

type deleteRecordsResponse struct {
	ThrottleTimeMs int32                        `kafka:"min=v0,max=v1"`
	Topics         []deleteRecordsResponseTopic `kafka:"min=v0,max=v1"`
}

type deleteRecordsResponseTopic struct {
	Name       string                           `kafka:"min=v0,max=v1"`
	Partitions []deleteRecordsResponsePartition `kafka:"min=v0,max=v1"`
}

type deleteRecordsResponsePartition struct {
	Partition    int32 `kafka:"min=v0,max=v1"`
	LowWatermark int64 `kafka:"min=v0,max=v1"`
	ErrorCode    int16 `kafka:"min=v0,max=v1"`
}

func (*deleteRecordsResponse) ApiKey() protocol.ApiKey { return protocol.DeleteRecords }

var _ protocol.BrokerMessage = (*deleteRecordsRequest)(nil)
