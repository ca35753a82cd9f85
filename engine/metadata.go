package engine

import (
	"fmt"
	"maps"
	"strconv"
	"unicode/utf8"
)

// Metadata is bounded like values, beside them rather than inside
// MaxValueBytes: a value is replaced by each set, metadata is merged into
// what the variable already has, so it grows across sets and needs its own
// bound on the merged map. Each map (a session's, a variable's after the
// merge, one request's) is bounded in entries, bytes per key and per value
// and key and value bytes in all; a session's metadata and all its
// variables' together are bounded too, so 200,000 entries cannot hide in
// many small variables.
//
// Every check here costs O(1), or O(entries of the request) after the
// entry count, checked first, has bounded them.

// checkMetadata refuses a map past the per-map limits and returns its
// stats. what names the map in the error ("metadata of session "s"").
func (st *state) checkMetadata(m map[string]string, what func() string) (metaStats, error) {
	ms, lim, err := metadataVerdict(&st.cfg, m, what)
	if err != nil {
		st.counts.limits[lim]++
	}
	return ms, err
}

// metadataVerdict is checkMetadata without the count of the refusal,
// which the loop keeps: callers run it off the loop (precheck) and the
// loop reports the verdict in its turn (reportMetadata).
func metadataVerdict(cfg *Config, m map[string]string, what func() string) (_ metaStats, lim int, _ error) {
	refuse := func(lim, value int, format string, args ...any) (metaStats, int, error) {
		return metaStats{}, lim, &LimitError{Limit: limitNames[lim], Value: int64(value), Detail: fmt.Sprintf(format, args...)}
	}
	if over(len(m), cfg.MaxMetadataEntries) {
		return refuse(limMetaEntries, cfg.MaxMetadataEntries, "%s has %d entries", what(), len(m))
	}
	ms := metaStats{entries: len(m)}
	for k, v := range m {
		if over(len(k), cfg.MaxMetadataKeyBytes) {
			return refuse(limMetaKey, cfg.MaxMetadataKeyBytes, "%s has a key of %d bytes", what(), len(k))
		}
		if over(len(v), cfg.MaxMetadataValueBytes) {
			return refuse(limMetaValue, cfg.MaxMetadataValueBytes, "%s has a value of %d bytes under key %s", what(), len(v), truncQuote(k))
		}
		ms.bytes += len(k) + len(v)
	}
	if over(ms.bytes, cfg.MaxMetadataBytes) {
		return refuse(limMetaBytes, cfg.MaxMetadataBytes, "%s has %d bytes of keys and values", what(), ms.bytes)
	}
	return ms, -1, nil
}

// reportMetadata is the loop's turn for a verdict metadataVerdict made
// off the loop: it counts a refusal, and returns it.
func (st *state) reportMetadata(lim int, err error) error {
	if st.j.replaying { // a journaled change passed its limits (replayConfig)
		return nil
	}
	if err != nil {
		st.counts.limits[lim]++
	}
	return err
}

// mergeMetadata is base with add merged in, as a new map; add wins.
// maps.Clone copies base's table wholesale, faster than inserting.
func mergeMetadata(base, add map[string]string) map[string]string {
	m := maps.Clone(base)
	if m == nil {
		m = make(map[string]string, len(add))
	}
	maps.Copy(m, add)
	return m
}

// checkMerged refuses a variable's merged metadata past the per-map
// limits; delta is the growth of its session's metadata bytes, which
// pending (bytes an atomic call's earlier sets add) must leave within
// MaxSessionMetadataBytes.
func (st *state) checkMerged(s *session, name string, merged metaStats, delta, pending int) error {
	cfg := &st.cfg
	if over(merged.entries, cfg.MaxMetadataEntries) {
		return st.refuse(limMetaEntries, cfg.MaxMetadataEntries, "metadata of variable %s would have %d entries", truncQuote(name), merged.entries)
	}
	if over(merged.bytes, cfg.MaxMetadataBytes) {
		return st.refuse(limMetaBytes, cfg.MaxMetadataBytes, "metadata of variable %s would have %d bytes of keys and values", truncQuote(name), merged.bytes)
	}
	return st.checkSessionMetadata(s, delta+pending)
}

// checkSessionMetadata refuses growing s's metadata bytes by delta past
// MaxSessionMetadataBytes.
func (st *state) checkSessionMetadata(s *session, delta int) error {
	if delta > 0 && over(s.metaBytes+delta, st.cfg.MaxSessionMetadataBytes) {
		return st.refuse(limSessionMeta, st.cfg.MaxSessionMetadataBytes,
			"session %q would hold %d bytes of metadata keys and values", s.id, s.metaBytes+delta)
	}
	return nil
}

// truncQuote quotes a client's string for an error message, cut to 64
// bytes: a limit error must not echo the megabyte it refused.
func truncQuote(s string) string {
	if len(s) <= 64 {
		return strconv.Quote(s)
	}
	cut := 64
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	// As errorf clips its arguments (clipped): the head and the length.
	return strconv.Quote(s[:cut]) + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
