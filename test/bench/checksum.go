package main

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ferrykit/ferry/verifier"
)

// Chunk checksum candidates: what each way of checksumming a chunk costs the servers per row of
// orders. Each is one aggregate over the whole table, run on the source (bench.orders) and the
// target (the idle copy) at once, as the Checksum verifier runs its chunks; the real verifiers
// (Checksum with the chosen hash, ChecksumTable) are measured in the same interleaved rounds, so
// their chunking, drill-down bookkeeping and Go side show beside the bare expressions.
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

type checksumCandidate struct {
	name string
	// agg is the SELECT list over the table (one scan); empty for a real verifier.
	agg string
	v   verifier.Verifier
}

func checksumCandidates(s, t *sql.DB) []checksumCandidate {
	xor := func(rowHash string) string { return "COUNT(*), BIT_XOR(" + rowHash + ")" }
	return []checksumCandidate{
		{name: "per-row MD5 of column tokens (the verifier before; 64 bits)", agg: xor(ordersTokensMD5)},
		{name: "pt-table-checksum: CRC32 of CONCAT_WS + ISNULL (32 bits, linear, ambiguous)", agg: xor(ordersPTChecksum)},
		{name: "compact encoding, CRC32 (32 bits, linear)", agg: xor("CRC32(" + ordersCompact + ")")},
		{name: "compact encoding, CRC32 and CRC32C (64 bits, linear, MariaDB)", agg: xor("CRC32(" + ordersCompact + ") << 32 | CRC32C(" + ordersCompact + ")")},
		{name: "compact encoding, MD5 (64 bits)", agg: xor("CAST(CONV(LEFT(MD5(" + ordersCompact + "), 16), 16, 10) AS UNSIGNED)")},
		{name: "compact encoding, SHA-1 (64 bits; chosen)", agg: xor("CAST(CONV(LEFT(SHA1(" + ordersCompact + "), 16), 16, 10) AS UNSIGNED)")},
		{name: "CHECKSUM TABLE EXTENDED (32 bits, whole table, no drill-down)", agg: "CHECKSUM"},
		{name: "verifier Checksum (chunks of 1000, SHA-1 of compact encoding)", v: &verifier.Checksum{Source: s, Target: t}},
	}
}

// checksumCosts runs every candidate -runs times, interleaved (a, b, c, ..., a, b, c, ...), and adds
// one figure per candidate: rows/s and the CPU-normalised ratio to the ferry copy (the copy's
// CPU-seconds per row over the candidate's: verifier rows per CPU-second over copy rows per
// CPU-second), each the median of the runs, with the range.
func (b *bench) checksumCosts(ctx context.Context, s, t *sql.DB, pairs []verifier.TablePair, dstDB string, runs int) error {
	copyFig := b.named["ferry copy, idle (orders)"]
	cands := checksumCandidates(s, t)
	type sample struct {
		rate, ratio float64
		cpu         CPU
	}
	samples := make([][]sample, len(cands))
	notes := make([]string, len(cands))
	loads := map[string]bool{}
	for i := 0; i < runs; i++ {
		for k, c := range cands {
			cpu := startCPU(b.src, b.dst)
			start := time.Now()
			var err error
			if c.v != nil {
				var res *verifier.Result
				res, err = c.v.Verify(ctx, verifier.BeforeCutover, pairs)
				if err == nil && !res.Match() {
					notes[k] = "MISMATCH reported: " + res.String()
				}
			} else {
				var sums [2]string
				err = scanBoth(ctx, s, t, c.agg, srcDB+".orders", dstDB+".orders", &sums)
				if err == nil && sums[0] != sums[1] {
					notes[k] = fmt.Sprintf("source and target differ: %s vs %s", sums[0], sums[1])
				}
			}
			d := time.Since(start)
			cp := cpu.stop(0)
			cp.Rows = b.rows
			if err != nil {
				notes[k] = "not measured: " + err.Error()
				continue
			}
			loads[cp.LoadAvg] = true
			sm := sample{rate: rate(b.rows, d), cpu: cp}
			if copyFig != nil && copyFig.CPU.perRow() > 0 && cp.perRow() > 0 {
				sm.ratio = copyFig.CPU.perRow() / cp.perRow()
			}
			samples[k] = append(samples[k], sm)
		}
	}
	var ls []string
	for l := range loads {
		ls = append(ls, l)
	}
	sort.Strings(ls)
	for k, c := range cands {
		ss := samples[k]
		if len(ss) == 0 {
			b.add(&Figure{Name: "checksum cost: " + c.name, NotMeasured: true, Note: notes[k]})
			continue
		}
		sort.Slice(ss, func(i, j int) bool { return ss[i].ratio < ss[j].ratio })
		med := ss[(len(ss)-1)/2]
		rates := make([]float64, len(ss))
		for i, x := range ss {
			rates[i] = x.rate
		}
		sort.Float64s(rates)
		note := fmt.Sprintf("median of %d interleaved runs: CPU-normalised ratio %.2f (range %.2f–%.2f), rows/s %.0f (range %.0f–%.0f); loadavg %s; measured on a loaded machine",
			len(ss), med.ratio, ss[0].ratio, ss[len(ss)-1].ratio, rates[(len(rates)-1)/2], rates[0], rates[len(rates)-1], strings.Join(ls, ", "))
		if notes[k] != "" {
			note += "; " + notes[k]
		}
		tgt := ""
		if c.v != nil {
			tgt = tgtChecksum
		}
		cpu := med.cpu
		b.add(&Figure{Name: "checksum cost: " + c.name, Value: rates[(len(rates)-1)/2], Unit: "rows/s", Target: tgt, CPU: &cpu, Note: note, Ref: "ferry copy, idle (orders)"})
	}
	return nil
}

// scanBoth runs SELECT agg over the source and target tables at once (CHECKSUM TABLE ... EXTENDED
// for agg "CHECKSUM") and returns each side's result as text.
func scanBoth(ctx context.Context, s, t *sql.DB, agg, srcTable, dstTable string, out *[2]string) error {
	g, gctx := errgroup.WithContext(ctx)
	for i, side := range []struct {
		db    *sql.DB
		table string
	}{{s, srcTable}, {t, dstTable}} {
		g.Go(func() error {
			if agg == "CHECKSUM" {
				var name string
				var sum sql.NullString
				if err := side.db.QueryRowContext(gctx, "CHECKSUM TABLE "+side.table+" EXTENDED").Scan(&name, &sum); err != nil {
					return err
				}
				out[i] = sum.String
				return nil
			}
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
