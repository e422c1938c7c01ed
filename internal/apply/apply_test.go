package apply

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func mapping() *Mapping {
	return &Mapping{
		Target: "`db`.`t`",
		// the source row is (id, name, legacy, note): legacy is not written, name is converted
		Columns: []Column{{Name: "id", Source: 0}, {Name: "name", Source: 1, Expr: "CONVERT(CAST(? AS BINARY) USING latin1)"}, {Name: "note", Source: 3}},
		Key:     []Column{{Name: "id", Source: 0}},
	}
}

func TestImageAndKey(t *testing.T) {
	m := mapping()
	row := []any{int64(7), []byte("a"), "dropped", nil}
	if got, want := m.Image(row), []any{int64(7), []byte("a"), nil}; !reflect.DeepEqual(got, want) {
		t.Errorf("Image = %v, want %v", got, want)
	}
	if got, want := m.KeyOf(row), []any{int64(7)}; !reflect.DeepEqual(got, want) {
		t.Errorf("KeyOf = %v, want %v", got, want)
	}
}

func TestStatements(t *testing.T) {
	a, b := mapping(), &Mapping{Target: "`db`.`u`", Columns: []Column{{Name: "k", Source: 0}, {Name: "v", Source: 1}},
		Key: []Column{{Name: "k", Source: 0, Expr: "CONVERT(? USING utf8mb4) COLLATE utf8mb4_bin"}}}
	set := func(m *Mapping, vals ...any) Change { return Change{Mapping: m, Values: vals} }
	del := func(m *Mapping, vals ...any) Change { return Change{Mapping: m, Delete: true, Values: vals} }
	for _, c := range []struct {
		name    string
		changes []Change
		want    []Statement
	}{
		{"nothing", nil, nil},
		{"one image", []Change{set(a, 1, "x", nil)}, []Statement{
			{"REPLACE INTO `db`.`t` (`id`, `name`, `note`) VALUES (?, CONVERT(CAST(? AS BINARY) USING latin1), ?)", []any{1, "x", nil}},
		}},
		{"consecutive images of one table: one statement", []Change{set(a, 1, "x", nil), set(a, 2, "y", "n")}, []Statement{
			{"REPLACE INTO `db`.`t` (`id`, `name`, `note`) VALUES (?, CONVERT(CAST(? AS BINARY) USING latin1), ?), (?, CONVERT(CAST(? AS BINARY) USING latin1), ?)", []any{1, "x", nil, 2, "y", "n"}},
		}},
		{"consecutive deletes: one statement, keys ORed", []Change{del(b, "p"), del(b, "q")}, []Statement{
			{"DELETE FROM `db`.`u` WHERE (`k` = CONVERT(? USING utf8mb4) COLLATE utf8mb4_bin) OR (`k` = CONVERT(? USING utf8mb4) COLLATE utf8mb4_bin)", []any{"p", "q"}},
		}},
		// a key change is delete-old + set-new; the order of kinds and tables is kept, never
		// regrouped across another change
		{"order is kept across kinds and tables", []Change{del(a, 1), set(a, 2, "y", nil), set(b, "k", "v"), set(a, 3, "z", nil)}, []Statement{
			{"DELETE FROM `db`.`t` WHERE (`id` = ?)", []any{1}},
			{"REPLACE INTO `db`.`t` (`id`, `name`, `note`) VALUES (?, CONVERT(CAST(? AS BINARY) USING latin1), ?)", []any{2, "y", nil}},
			{"REPLACE INTO `db`.`u` (`k`, `v`) VALUES (?, ?)", []any{"k", "v"}},
			{"REPLACE INTO `db`.`t` (`id`, `name`, `note`) VALUES (?, CONVERT(CAST(? AS BINARY) USING latin1), ?)", []any{3, "z", nil}},
		}},
	} {
		got := Statements(c.changes)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestStatementsAreCut(t *testing.T) {
	m := &Mapping{Target: "`db`.`t`", Columns: []Column{{Name: "a", Source: 0}, {Name: "b", Source: 1}, {Name: "c", Source: 2}}}
	// by placeholders: 3 values a row, fewer than MaxPlaceholders in each statement
	var many []Change
	for i := 0; i < 50000; i++ {
		many = append(many, Change{Mapping: m, Values: []any{i, i, i}})
	}
	// by bytes: 1 MiB values, about MaxStatementBytes in each statement
	big := make([]byte, 1<<20)
	var large []Change
	for i := 0; i < 10; i++ {
		large = append(large, Change{Mapping: m, Values: []any{i, big, nil}})
	}
	for _, c := range []struct {
		name    string
		changes []Change
	}{{"placeholders", many}, {"bytes", large}} {
		stmts := Statements(c.changes)
		if len(stmts) < 2 {
			t.Errorf("%s: %d statement(s), want the changes cut into several", c.name, len(stmts))
		}
		rows := 0
		for _, s := range stmts {
			if len(s.Args) >= MaxPlaceholders {
				t.Errorf("%s: a statement binds %d values", c.name, len(s.Args))
			}
			if n := strings.Count(s.Query, "?"); n != len(s.Args) {
				t.Errorf("%s: %d placeholders, %d args", c.name, n, len(s.Args))
			}
			size := 0
			for _, a := range s.Args {
				if b, ok := a.([]byte); ok {
					size += len(b)
				}
			}
			if size > MaxStatementBytes/2+len(big) {
				t.Errorf("%s: a statement carries %d bytes of values", c.name, size)
			}
			rows += len(s.Args) / 3
		}
		if rows != len(c.changes) {
			t.Errorf("%s: %d rows in the statements, want %d", c.name, rows, len(c.changes))
		}
	}
}

func TestTake(t *testing.T) {
	ctx := context.Background()
	size := func(b []int) int { return len(b) }
	q := make(chan []int, 10)
	closed := make(chan struct{})
	q <- []int{1, 2}
	q <- []int{3}
	q <- []int{4, 5, 6}
	q <- []int{7}
	// takes batches until their size reaches the limit, never splitting one
	items, n, done, err := Take(ctx, q, closed, size, 3)
	if err != nil || done || n != 3 || !reflect.DeepEqual(items, [][]int{{1, 2}, {3}}) {
		t.Fatalf("Take = %v, %d, %v, %v; want the first two batches (3 items)", items, n, done, err)
	}
	items, n, _, _ = Take(ctx, q, closed, size, 3)
	if n != 3 || len(items) != 1 {
		t.Fatalf("Take = %v, %d; want the batch of 3 alone", items, n)
	}
	// after close, what is queued is still taken, then done
	close(closed)
	if items, _, done, _ := Take(ctx, q, closed, size, 3); done || !reflect.DeepEqual(items, [][]int{{7}}) {
		t.Fatalf("after close: %v, done %v; want the last batch", items, done)
	}
	if _, _, done, err := Take(ctx, q, closed, size, 3); !done || err != nil {
		t.Fatalf("after close with nothing queued: done %v, %v; want done", done, err)
	}
	// a cancelled context ends the wait
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, _, err := Take(cctx, make(chan []int), nil, size, 3); err != context.Canceled {
		t.Fatalf("cancelled: %v", err)
	}
}

// Under a target's max_allowed_packet, images are cut into statements that fit, and an image no
// statement can hold is refused naming the table, its key and the size; without a known packet
// size nothing is refused.
func TestStatementsWithinPacket(t *testing.T) {
	m := mapping()
	big := func(id int64, n int) Change {
		return Change{Mapping: m, Values: []any{id, []byte(strings.Repeat("a", n)), nil}}
	}
	const packet = 1 << 20
	stmts, err := StatementsWithin([]Change{big(1, 200<<10), big(2, 200<<10), big(3, 200<<10), big(4, 200<<10)}, packet)
	if err != nil {
		t.Fatal(err)
	}
	if len(stmts) < 2 {
		t.Errorf("4 images of 200 KiB (800 KiB escaped in the worst case each pair) in %d statement(s) under a 1 MiB packet", len(stmts))
	}
	for _, s := range stmts {
		if n := len(s.Query) + ExactSize(s.Args); n > packet {
			t.Errorf("a statement of %d bytes under a %d-byte packet", n, packet)
		}
	}
	// 600 KiB of quotes: 1.2 MiB escaped.
	tooBig := Change{Mapping: m, Values: []any{int64(9), []byte(strings.Repeat("'", 600<<10)), nil}}
	_, err = StatementsWithin([]Change{big(1, 10), tooBig}, packet)
	if !errors.Is(err, ErrRowTooLarge) || !strings.Contains(err.Error(), "table `db`.`t`, row (id)=(9)") || !strings.Contains(err.Error(), "max_allowed_packet of 1048576 bytes") {
		t.Errorf("want ErrRowTooLarge naming the row, got %v", err)
	}
	if _, err := StatementsWithin([]Change{tooBig}, 0); err != nil {
		t.Errorf("unknown packet size: %v", err)
	}
	// 600 KiB of plain bytes fit (the cheap bound is twice that; the exact size is checked).
	if _, err := StatementsWithin([]Change{big(5, 600<<10)}, packet); err != nil {
		t.Errorf("a 600 KiB image under a 1 MiB packet: %v", err)
	}
}
