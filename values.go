package ferry

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/ferrykit/ferry/schema"
)

// normalizeValue turns a value decoded from the binlog into the value to write for column c, so the
// binlog path stores exactly the bytes the copy path stores:
//   - strings become []byte, sent as _binary literals, so no character set conversion happens (a
//     latin1 value stays latin1);
//   - integers of unsigned columns are reinterpreted as unsigned (without binlog_row_metadata the
//     decoder cannot know the column is unsigned and returns a negative number);
//   - BIT and SET values (bit patterns) become unsigned so BIT(64) with the top bit set survives;
//   - BINARY(N) values get back the trailing zero bytes the binlog strips.
func normalizeValue(c *schema.Column, v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		v = []byte(x)
	case int8:
		if c.Unsigned {
			return uint64(uint8(x))
		}
		return int64(x)
	case int16:
		if c.Unsigned {
			return uint64(uint16(x))
		}
		return int64(x)
	case int32:
		if c.Unsigned {
			if c.DataType == "mediumint" {
				return uint64(uint32(x) & 0xFFFFFF)
			}
			return uint64(uint32(x))
		}
		return int64(x)
	case int64:
		if c.Unsigned || c.DataType == "bit" || c.DataType == "set" {
			return uint64(x)
		}
		return x
	case int:
		if c.DataType == "year" {
			return int64(x)
		}
		return int64(x)
	}
	if b, ok := v.([]byte); ok && c.IsBinaryFixed() && int64(len(b)) < c.OctetLength {
		padded := make([]byte, c.OctetLength)
		copy(padded, b)
		return padded
	}
	return v
}

// keyString encodes key values into a string usable as a map key; equal keys encode equally.
// Used only to de-duplicate events of one row inside a batch, never to order keys.
func keyString(vals []any) string {
	var b bytes.Buffer
	for _, v := range vals {
		switch x := v.(type) {
		case nil:
			b.WriteString("N;")
		case []byte:
			b.WriteString(strconv.Itoa(len(x)))
			b.WriteByte(':')
			b.Write(x)
			b.WriteByte(';')
		default:
			s := fmt.Sprint(x)
			b.WriteString(strconv.Itoa(len(s)))
			b.WriteByte('#')
			b.WriteString(s)
			b.WriteByte(';')
		}
	}
	return b.String()
}
