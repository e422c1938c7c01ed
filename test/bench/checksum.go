package main

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
)

// Chunk checksum candidates: what each way of checksumming a chunk costs the servers per row of
// orders. Each is one aggregate over the whole table, run on the source (bench.orders) and the
// target (the idle copy) at once, as the Checksum verifier runs its chunks; the verify section runs
// them in the same interleaved rounds as the verifiers themselves (Checksum, ChecksumTable: CHECKSUM
// TABLE), so the verifiers' chunking and Go side show beside the bare expressions.
//
// The expressions are the orders table's (see ordersDDL), written out column by column.

// ordersTokensMD5 is the chunk checksum the verifier used before: the MD5 of per-column tokens
// (length ':' bytes, 'N' for NULL, long values as their MD5).
const ordersTokensMD5 = `CAST(CONV(LEFT(MD5(CONCAT(
	IFNULL(CONCAT(LENGTH(id),':',id),'N'), IFNULL(CONCAT(LENGTH(customer_id),':',customer_id),'N'),
	IFNULL(CONCAT(LENGTH(status),':',status),'N'), IFNULL(CONCAT(LENGTH(quantity),':',quantity),'N'),
	IFNULL(CONCAT(LENGTH(CAST(title AS BINARY)),':',CAST(title AS BINARY)),'N'),
	IFNULL(CONCAT(LENGTH(CAST(note AS BINARY)),':',CAST(note AS BINARY)),'N'),
	IFNULL(CONCAT(LENGTH(amount),':',amount),'N'), IFNULL(CONCAT(LENGTH(created_at),':',created_at),'N'),
	IFNULL(CONCAT(LENGTH(updated_at),':',updated_at),'N'),
	IFNULL(MD5(CAST(attrs AS BINARY)),'N'), IFNULL(MD5(payload),'N'))), 16), 16, 10) AS UNSIGNED)`

// ordersPTChecksum is pt-table-checksum's row function: CONCAT_WS of the values and their ISNULL
// markers (ambiguous when a value holds the separator), CRC32.
const ordersPTChecksum = `CRC32(CONCAT_WS('#', id, customer_id, status, quantity, title, note, amount, created_at,
	updated_at, attrs, payload, CONCAT(ISNULL(quantity), ISNULL(note), ISNULL(updated_at), ISNULL(attrs), ISNULL(payload))))`

// ordersCompact is the verifier's compact row encoding of orders (verifier.compactRowSQL).
const ordersCompact = `CONCAT_WS(_binary'#',
	CONCAT(ISNULL(quantity), ISNULL(note), ISNULL(updated_at), ISNULL(attrs), ISNULL(payload)),
	CONCAT_WS(',', LENGTH(title), LENGTH(note), LENGTH(attrs), LENGTH(payload)),
	id, customer_id, status, quantity, CAST(title AS BINARY), CAST(note AS BINARY), amount, created_at, updated_at,
	IF(LENGTH(attrs) > 1024, SHA1(CAST(attrs AS BINARY)), CAST(attrs AS BINARY)),
	IF(LENGTH(payload) > 1024, SHA1(payload), payload))`

// checksumCandidate is one chunk checksum: a name and the SELECT list of one scan of orders.
type checksumCandidate struct{ name, agg string }

func checksumCandidates() []checksumCandidate {
	xor := func(rowHash string) string { return "COUNT(*), BIT_XOR(" + rowHash + ")" }
	return []checksumCandidate{
		{"per-row MD5 of column tokens (the verifier before; 64 bits)", xor(ordersTokensMD5)},
		{"pt-table-checksum: CRC32 of CONCAT_WS + ISNULL (32 bits, linear, ambiguous)", xor(ordersPTChecksum)},
		{"compact encoding, CRC32 (32 bits, linear)", xor("CRC32(" + ordersCompact + ")")},
		{"compact encoding, CRC32 and CRC32C (64 bits, linear, MariaDB)", xor("CRC32(" + ordersCompact + ") << 32 | CRC32C(" + ordersCompact + ")")},
		{"compact encoding, MD5 (64 bits)", xor("CAST(CONV(LEFT(MD5(" + ordersCompact + "), 16), 16, 10) AS UNSIGNED)")},
		{"compact encoding, SHA-1 (64 bits; the verifier now)", xor("CAST(CONV(LEFT(SHA1(" + ordersCompact + "), 16), 16, 10) AS UNSIGNED)")},
	}
}

// run is one run of the candidate: the scan on the source (bench.orders) and on the target
// (dstDB.orders) at once, with both servers' CPU.
func (c checksumCandidate) run(b *bench, s, t *sql.DB, dstDB string) runFn {
	return func(int) (Sample, error) {
		cpu := startCPU(b.src, b.dst)
		start := time.Now()
		var sums [2]string
		if err := scanBoth(b.ctx, s, t, c.agg, srcDB+".orders", dstDB+".orders", &sums); err != nil {
			return Sample{}, fmt.Errorf("%s: %w", c.name, err)
		}
		d := time.Since(start)
		cp := cpu.stop(0)
		cp.Rows = b.rows
		out := Sample{Value: rate(b.rows, d), CPU: &cp}
		if sums[0] != sums[1] {
			out.Note = fmt.Sprintf("source and target differ: %s vs %s", sums[0], sums[1])
		}
		return out, nil
	}
}

// cpuRatioNote gives the CPU-normalised ratio of every run of fig against the reference figure's
// CPU per row (for the verifiers: verifier rows per CPU-second over the copy's), as a median with
// its range.
func (b *bench) cpuRatioNote(fig *Series, ref string) string {
	r := b.named[ref]
	if r == nil || r.CPU.perRow() <= 0 {
		return ""
	}
	var ratios []float64
	for _, x := range fig.Samples {
		if x.CPU.perRow() > 0 {
			ratios = append(ratios, r.CPU.perRow()/x.CPU.perRow())
		}
	}
	if len(ratios) == 0 {
		return ""
	}
	m, lo, hi := medianRange(ratios)
	return fmt.Sprintf("CPU-normalised ratio per run: median %.2f, range %.2f–%.2f (%d runs)", m, lo, hi, len(ratios))
}

// scanBoth runs SELECT agg over the source and target tables at once and returns each side's result
// as text.
func scanBoth(ctx context.Context, s, t *sql.DB, agg, srcTable, dstTable string, out *[2]string) error {
	g, gctx := errgroup.WithContext(ctx)
	for i, side := range []struct {
		db    *sql.DB
		table string
	}{{s, srcTable}, {t, dstTable}} {
		g.Go(func() error {
			var n int64
			var sum sql.NullString
			if err := side.db.QueryRowContext(gctx, "SELECT "+agg+" FROM "+side.table).Scan(&n, &sum); err != nil {
				return err
			}
			out[i] = fmt.Sprintf("%d rows, %s", n, sum.String)
			return nil
		})
	}
	return g.Wait()
}
