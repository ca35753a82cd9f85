package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/varwatch/varwatch/proto/varwatch/v1"
)

// This file prints messages: for people (one line per variable or update,
// values through formatValue) and for scripts (--json: one JSON object per
// line, the proto JSON mapping with the .proto field names, so the names
// are as stable as the wire contract; 64-bit integers are strings there).

// printJSON writes m as one line of JSON.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return err
	}
	// protojson varies its whitespace on purpose; compact it so the same
	// message always prints the same line.
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// formatVariable is one line about a variable:
// temperature = 21.5 (float, id=1, version=1, rev=1, source=cli)
func formatVariable(v *pb.Variable) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s = %s (%s, id=%s, version=%d, rev=%d", v.GetName(), formatValue(v.GetValue()),
		typeName(v.GetType()), v.GetId(), v.GetVersion(), v.GetModRevision())
	if s := v.GetLastUpdateSource(); s != "" {
		fmt.Fprintf(&b, ", source=%s", s)
	}
	b.WriteString(")")
	return b.String()
}

// printVariable prints formatVariable, then the constraints and metadata
// on indented lines when there are any.
func printVariable(w io.Writer, v *pb.Variable) {
	fmt.Fprintln(w, formatVariable(v))
	if c := formatConstraints(v.GetConstraints()); c != "" {
		fmt.Fprintf(w, "  constraints: %s\n", c)
	}
	if m := formatMap(v.GetMetadata()); m != "" {
		fmt.Fprintf(w, "  metadata: %s\n", m)
	}
}

// formatConstraints prints constraints as the register flags spell them.
func formatConstraints(c *pb.Constraints) string {
	if c == nil {
		return ""
	}
	var parts []string
	add := func(k, v string) { parts = append(parts, k+"="+v) }
	f := func(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
	i := func(x int64) string { return strconv.FormatInt(x, 10) }
	if c.Min != nil {
		add("min", f(*c.Min))
	}
	if c.Max != nil {
		add("max", f(*c.Max))
	}
	if c.MinInteger != nil {
		add("min", i(*c.MinInteger))
	}
	if c.MaxInteger != nil {
		add("max", i(*c.MaxInteger))
	}
	if c.MinLength != nil {
		add("min-length", i(*c.MinLength))
	}
	if c.MaxLength != nil {
		add("max-length", i(*c.MaxLength))
	}
	if c.GetPattern() != "" {
		add("pattern", strconv.Quote(c.GetPattern()))
	}
	if len(c.GetChoices()) > 0 {
		add("choices", strings.Join(c.GetChoices(), ","))
	}
	if len(c.GetAllowedModules()) > 0 {
		add("modules", strings.Join(c.GetAllowedModules(), ","))
	}
	if c.GetDimensions() != 0 {
		add("dimensions", strconv.Itoa(int(c.GetDimensions())))
	}
	if len(c.GetShape()) > 0 {
		s := make([]string, len(c.GetShape()))
		for k, d := range c.GetShape() {
			s[k] = i(d)
		}
		add("shape", strings.Join(s, ","))
	}
	return strings.Join(parts, " ")
}

// formatMap prints k=v pairs sorted by key.
func formatMap(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, " ")
}

// formatUpdate is one line about a watch update:
//
//	rev=5 value_change temperature 21.5 -> 22 (source=cli)
//	rev=1 initial_value temperature 21.5
//	rev=1 initial_values_complete
//	rev=6 variable_registered humidity 40
//	rev=7 variable_deleted humidity
//	rev=7 heartbeat
//	rev=7 session_closed
func formatUpdate(u *pb.VariableUpdate) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rev=%d %s", u.GetRevision(), u.GetUpdateType())
	v := u.GetVariable()
	switch u.GetUpdateType() {
	case "value_change":
		fmt.Fprintf(&b, " %s %s -> %s", v.GetName(), formatValue(u.GetOldValue()), formatValue(v.GetValue()))
	case "initial_value", "variable_registered":
		fmt.Fprintf(&b, " %s %s", v.GetName(), formatValue(v.GetValue()))
	case "variable_deleted":
		fmt.Fprintf(&b, " %s", v.GetName())
	}
	var extra []string
	if s := u.GetUpdateSource(); s != "" && u.GetUpdateType() == "value_change" {
		extra = append(extra, "source="+s)
	}
	if m := formatMap(u.GetUpdateMetadata()); m != "" {
		extra = append(extra, m)
	}
	if n := u.GetCoalescedCount(); n > 1 {
		extra = append(extra, fmt.Sprintf("coalesced %d changes from rev=%d", n, u.GetCoalescedFromRevision()))
	}
	if len(extra) > 0 {
		fmt.Fprintf(&b, " (%s)", strings.Join(extra, ", "))
	}
	return b.String()
}

// formatTime prints a wire timestamp in UTC, to the millisecond.
func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format("2006-01-02T15:04:05.000Z")
}

// formatDuration prints a duration without noise ("1h", "90s", "1h30m").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
