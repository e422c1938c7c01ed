package ferry

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/ferrykit/ferry/internal/retry"
)

// XA transactions in the binlog.
//
// The row events of an XA transaction are written at XA PREPARE, in an event group of their own
// (MariaDB: a GTID event flagged "prepared XA", the rows, XA END, an XA_PREPARE event; MySQL: XA
// START instead of the flag). Whether they happened is decided later, by a separate group holding
// XA COMMIT or XA ROLLBACK, possibly after many other transactions. So the streamer buffers the
// changes of copied tables of a prepared XA transaction, keyed by its XID, hands them to the
// listeners only at its XA COMMIT (the point where the changes become visible on the source; the
// rows stay locked in between, so no other transaction touched them), and drops them at XA
// ROLLBACK. XA COMMIT … ONE PHASE is logged as an ordinary transaction.
//
// Positions: while a prepared XA transaction is pending, no commit position handed to the listeners
// is beyond the start of its prepare group, so neither a reconnect nor a resume from a checkpoint
// can skip the prepare: both re-read it (and re-deliver the transactions after it, which is
// harmless, see TargetBinlogWriter). A flush (and therefore a cut-over) fails while a pending XA
// transaction holds changes of copied tables: the target cannot equal the source until it ends.
// An XA COMMIT whose prepare the stream never saw (prepared before the copy started) stops the run:
// its changes may be missing. Buffered changes are bounded by MaxPendingXAChanges.

// Event-group flags of MariaDB's GTID event.
const (
	mariadbFlagPreparedXA  = 0x40
	mariadbFlagCompletedXA = 0x80
)

// PendingXA is a prepared XA transaction not yet committed or rolled back on the source.
type PendingXA struct {
	// XID as the binlog writes it: X'gtrid',X'bqual',formatID.
	XID string
	// Start is where its prepare group starts; commit positions never pass it while it is pending.
	Start Position
	// Changes counts its buffered row changes of copied tables.
	Changes int

	batches []*BinlogBatch
}

// PendingXA lists the prepared XA transactions seen by the stream and still pending, oldest first.
func (s *SourceBinlogStreamer) PendingXA() []PendingXA {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PendingXA, len(s.xa))
	for i, x := range s.xa {
		out[i] = PendingXA{XID: x.XID, Start: x.Start, Changes: x.Changes}
	}
	return out
}

// clampToPendingXA returns p, or the start of the oldest pending XA transaction if that is earlier.
func (s *SourceBinlogStreamer) clampToPendingXA(p Position) Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.xa) > 0 && s.xa[0].Start.Compare(p) < 0 {
		return s.xa[0].Start
	}
	return p
}

func (s *SourceBinlogStreamer) maxPendingXAChanges() int {
	if s.MaxPendingXAChanges > 0 {
		return s.MaxPendingXAChanges
	}
	return 100000
}

// bufferXA keeps a batch of the XA transaction being read, within the bound.
func (d *eventDecoder) bufferXA(b *BinlogBatch) error {
	d.xa.batches = append(d.xa.batches, b)
	d.xa.Changes += len(b.Events)
	total := d.xa.Changes
	for _, x := range d.s.PendingXA() {
		total += x.Changes
	}
	if total > d.s.maxPendingXAChanges() {
		return retry.Permanent(fmt.Errorf("prepared XA transactions hold more than %d row changes of copied tables awaiting XA COMMIT (the one being read was prepared at %s); ferry keeps them in memory until then: raise MaxPendingXAChanges or commit XA transactions in smaller pieces", d.s.maxPendingXAChanges(), d.xa.Start))
	}
	return nil
}

// prepareXA ends the prepare group of the XA transaction being read: its changes wait for XA COMMIT.
func (d *eventDecoder) prepareXA(ctx context.Context, h *replication.EventHeader, data []byte) (*Position, error) {
	xid, onePhase, err := decodeXAPrepare(data)
	if err != nil {
		return nil, retry.Permanent(fmt.Errorf("XA PREPARE event at %s:%d: %w", d.file, h.LogPos, err))
	}
	x := d.xa
	d.xa = nil
	if x == nil { // a prepare whose start the stream did not see cannot happen: the group starts it
		return nil, retry.Permanent(fmt.Errorf("XA PREPARE %s at %s:%d without its XA START", xid, d.file, h.LogPos))
	}
	x.XID = xid
	if onePhase { // MySQL's XA COMMIT … ONE PHASE: committed right here
		for _, b := range x.batches {
			if err := d.deliver(ctx, b); err != nil {
				return nil, err
			}
		}
		return d.commit(ctx, h)
	}
	d.s.mu.Lock()
	d.s.xa = append(d.s.xa, x)
	d.s.mu.Unlock()
	return d.commit(ctx, h)
}

// completeXA applies (XA COMMIT) or drops (XA ROLLBACK) a pending XA transaction.
func (d *eventDecoder) completeXA(ctx context.Context, h *replication.EventHeader, query string) (*Position, error) {
	fields := strings.Fields(query)
	commit := strings.EqualFold(fields[1], "COMMIT")
	xid := normalizeXID(strings.Join(fields[2:], ""))
	var x *PendingXA
	d.s.mu.Lock()
	for i, p := range d.s.xa {
		if p.XID == xid {
			x = p
			d.s.xa = append(d.s.xa[:i:i], d.s.xa[i+1:]...)
			break
		}
	}
	d.s.mu.Unlock()
	if x == nil && commit {
		return nil, retry.Permanent(fmt.Errorf("%s at %s:%d commits an XA transaction prepared before the stream started: its changes were neither copied (uncommitted then) nor streamed, so ferry stopped; start the copy again while no XA transaction is prepared on the source (XA RECOVER lists them)", abbreviateSQL(query), d.file, h.LogPos))
	}
	if x != nil && commit {
		for _, b := range x.batches {
			b.Received = time.Now()
			if err := d.deliver(ctx, b); err != nil {
				return nil, err
			}
		}
	}
	return d.commit(ctx, h)
}

// decodeXAPrepare reads an XA_PREPARE event: one_phase (1 byte), formatID, gtrid length, bqual
// length (4 bytes each, little-endian), then gtrid and bqual.
func decodeXAPrepare(data []byte) (xid string, onePhase bool, err error) {
	if len(data) < 13 {
		return "", false, fmt.Errorf("short event (%d bytes)", len(data))
	}
	formatID := int32(binary.LittleEndian.Uint32(data[1:]))
	gl, bl := binary.LittleEndian.Uint32(data[5:]), binary.LittleEndian.Uint32(data[9:])
	if uint64(len(data)) < 13+uint64(gl)+uint64(bl) {
		return "", false, fmt.Errorf("XID of %d+%d bytes in a %d-byte event", gl, bl, len(data))
	}
	g, b := data[13:13+gl], data[13+gl:13+gl+bl]
	return fmt.Sprintf("X'%X',X'%X',%d", g, b, formatID), data[0] != 0, nil
}

// normalizeXID puts an XID from an XA statement of the binlog (X'…',X'…',n) in decodeXAPrepare's
// form.
func normalizeXID(s string) string {
	s = strings.TrimSuffix(strings.ToUpper(strings.Join(strings.Fields(s), "")), "ONEPHASE")
	return s
}

// xaVerb returns the second word of an XA statement (START, END, COMMIT, …), or "".
func xaVerb(q string) string {
	f := strings.Fields(q)
	if len(f) < 2 || !strings.EqualFold(f[0], "XA") {
		return ""
	}
	return strings.ToUpper(f[1])
}
