package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
)

// FuzzMetadataLimits runs a random sequence of registrations, sets and
// deletes with random metadata against small limits, and checks each
// outcome against metaModel, an independent statement of the rules of
// metadata.go:
//
//   - a request is refused exactly when the model refuses it, with a
//     *LimitError naming a limit the model names;
//   - a refused request leaves every variable's metadata as it was;
//   - an accepted one leaves the merge the model computes.
//
// ops is read three bytes at a time: what to do (mod 3: register, set,
// delete) and on which of three variables, then a metadata map decoded by
// fuzzMeta from the bytes that follow.
//
// Run it with: go test -run '^$' -fuzz '^FuzzMetadataLimits$' -fuzztime 60s ./engine/
func FuzzMetadataLimits(f *testing.F) {
	f.Add([]byte{0, 0, 2, 1, 3, 2, 4, 1, 1, 1, 2, 2, 2})
	f.Add([]byte{0, 0, 1, 9, 9, 1, 0, 4, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Add([]byte{0, 1, 1, 4, 12, 0, 2, 1, 4, 12, 1, 1, 1, 4, 12, 2, 1, 0})
	f.Add([]byte{0, 0, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Fuzz(runMetaOps)
}

func runMetaOps(t *testing.T, ops []byte) {
	{
		ctx := context.Background()
		cfg := Config{MaxMetadataEntries: 4, MaxMetadataKeyBytes: 5, MaxMetadataValueBytes: 8,
			MaxMetadataBytes: 24, MaxSessionMetadataBytes: 50, MaxSendMessageBytes: -1}
		e := New(cfg)
		defer e.Close()
		if _, _, err := e.CreateSession(ctx, CreateSessionRequest{ID: "s"}); err != nil {
			t.Fatal(err)
		}
		m := metaModel{cfg: cfg, vars: map[string]map[string]string{}}
		for len(ops) >= 2 {
			op, name := ops[0]%3, fmt.Sprintf("v%d", ops[1]%3)
			var meta map[string]string
			meta, ops = fuzzMeta(ops[2:])
			var err error
			var want []string // limits the model refuses with; nil: accept
			switch op {
			case 0:
				_, err = e.Register(ctx, RegisterRequest{Session: "s", Name: name, Type: TypeInteger, Value: Integer(0), Metadata: meta})
				want = m.register(name, meta)
			case 1:
				_, err = e.Set(ctx, SetRequest{Session: "s", Variable: name, Value: Integer(1), Metadata: meta})
				want = m.set(name, meta)
			case 2:
				_, err = e.Delete(ctx, "s", name)
				m.remove(name)
			}
			var le *LimitError
			switch {
			case errors.As(err, &le):
				if !slices.Contains(want, le.Limit) {
					t.Fatalf("op %d on %s with %v: refused by %s, model says %v", op, name, meta, le.Limit, want)
				}
			case want != nil:
				t.Fatalf("op %d on %s with %v: %v, model refuses with %v", op, name, meta, err, want)
			case err != nil && !errors.Is(err, ErrVariableNotFound) && !errors.Is(err, ErrAlreadyExists):
				t.Fatalf("op %d on %s: %v", op, name, err)
			}
			for name, want := range m.vars {
				v, err := e.Get(ctx, "s", name)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !maps.Equal(v.Metadata, want) && !(len(v.Metadata) == 0 && len(want) == 0) {
					t.Fatalf("%s has metadata %v, model says %v", name, v.Metadata, want)
				}
			}
		}
	}
}

// fuzzMeta decodes a map from b: a count of entries (mod 6), then per
// entry a key length (mod 8) and a value length (mod 12); keys are made
// distinct by their first byte, taken from b too.
func fuzzMeta(b []byte) (map[string]string, []byte) {
	if len(b) == 0 {
		return nil, b
	}
	n := int(b[0] % 6)
	b = b[1:]
	m := make(map[string]string, n)
	for i := 0; i < n && len(b) >= 2; i++ {
		klen, vlen := int(b[0]%8), int(b[1]%12)
		key := make([]byte, klen)
		for j := range key {
			key[j] = 'a' + byte(i)
		}
		if klen > 0 {
			key[0] = 'a' + (b[0]/8)%26
		}
		m[string(key)] = string(make([]byte, vlen))
		b = b[2:]
	}
	return m, b
}

// metaModel is what the metadata limits allow, computed from scratch on
// every request: no stats, no incremental merges.
type metaModel struct {
	cfg  Config
	vars map[string]map[string]string
}

func bytesOf(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

func (m *metaModel) sessionBytes() int {
	n := 0
	for _, vm := range m.vars {
		n += bytesOf(vm)
	}
	return n
}

// request lists the limits that refuse meta itself.
func (m *metaModel) request(meta map[string]string) []string {
	if len(meta) > m.cfg.MaxMetadataEntries {
		return []string{LimitMetadataEntries}
	}
	var why []string
	for k, v := range meta { // the engine may find either first
		if len(k) > m.cfg.MaxMetadataKeyBytes {
			why = append(why, LimitMetadataKeyBytes)
		}
		if len(v) > m.cfg.MaxMetadataValueBytes {
			why = append(why, LimitMetadataValueBytes)
		}
	}
	if why == nil && bytesOf(meta) > m.cfg.MaxMetadataBytes {
		why = []string{LimitMetadataBytes}
	}
	return why
}

func (m *metaModel) register(name string, meta map[string]string) []string {
	if _, ok := m.vars[name]; ok {
		return nil // already exists
	}
	if why := m.request(meta); why != nil {
		return why
	}
	if m.sessionBytes()+bytesOf(meta) > m.cfg.MaxSessionMetadataBytes {
		return []string{LimitSessionMetadataBytes}
	}
	m.vars[name] = maps.Clone(meta)
	return nil
}

func (m *metaModel) set(name string, meta map[string]string) []string {
	cur, ok := m.vars[name]
	if !ok {
		return nil // not found
	}
	if why := m.request(meta); why != nil {
		return why
	}
	merged := maps.Clone(cur)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, meta)
	switch {
	case len(merged) > m.cfg.MaxMetadataEntries:
		return []string{LimitMetadataEntries}
	case bytesOf(merged) > m.cfg.MaxMetadataBytes:
		return []string{LimitMetadataBytes}
	case bytesOf(merged) > bytesOf(cur) && m.sessionBytes()-bytesOf(cur)+bytesOf(merged) > m.cfg.MaxSessionMetadataBytes:
		return []string{LimitSessionMetadataBytes}
	}
	m.vars[name] = merged
	return nil
}

func (m *metaModel) remove(name string) { delete(m.vars, name) }
