package cli

import (
	"flag"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/varwatch/varwatch/engine"
	"github.com/varwatch/varwatch/internal/metrics"
	"github.com/varwatch/varwatch/journal"
)

// serveDurability is the --data-dir group of serve flags: without
// --data-dir the server keeps everything in memory.
type serveDurability struct {
	dataDir         string
	fsync           string
	fsyncInterval   time.Duration
	snapshotRecords int
	snapshotBytes   int64
	truncateCorrupt bool
	mode            journal.FsyncMode
	journal         *journal.Journal // open, once openEngine ran with a --data-dir
}

func addServeDurabilityFlags(fs *flag.FlagSet) *serveDurability {
	d := &serveDurability{}
	fs.StringVar(&d.dataDir, "data-dir", "", "`directory` keeping the state across restarts: a write-ahead log and snapshots (with --cluster: the node's newest snapshot only); empty: in memory only; see README \"Durability\"")
	fs.StringVar(&d.fsync, "fsync", "batch", "`mode` of writing the log to disk: batch (before every reply; loses nothing), interval (every --fsync-interval; a power failure loses up to one interval), none (when the kernel likes; a power failure loses what it had not written)")
	fs.DurationVar(&d.fsyncInterval, "fsync-interval", 100*time.Millisecond, "period of --fsync=interval")
	fs.IntVar(&d.snapshotRecords, "snapshot-records", 100000, "take a snapshot (and truncate the log) after this many log records")
	fs.Int64Var(&d.snapshotBytes, "snapshot-bytes", 64<<20, "take a snapshot (and truncate the log) after this many `bytes` of log records")
	fs.BoolVar(&d.truncateCorrupt, "truncate-corrupt", false, "when a log record is corrupt, start with the state before it and drop it and every later record, instead of refusing to start (back up --data-dir first)")
	return d
}

func (d *serveDurability) validate() error {
	mode, err := journal.ParseFsync(d.fsync)
	if err != nil {
		return usagef("--fsync: %v", err)
	}
	d.mode = mode
	switch {
	case d.fsyncInterval <= 0:
		return usagef("--fsync-interval must be positive")
	case d.snapshotRecords <= 0 || d.snapshotBytes <= 0:
		return usagef("--snapshot-records and --snapshot-bytes must be positive")
	}
	return nil
}

// openEngine starts the engine: in memory, or over the data directory
// after loading what it holds. stop closes the engine (which writes a
// final snapshot) and then the directory.
func (d *serveDurability) openEngine(log hclog.Logger, cfg engine.Config) (eng *engine.Engine, stop func(), err error) {
	if d == nil || d.dataDir == "" {
		eng = engine.New(cfg)
		return eng, func() { _ = eng.Close() }, nil
	}
	jlog := log.Named("journal")
	warn := func(format string, args ...any) { jlog.Warn(fmt.Sprintf(format, args...)) }
	j, err := journal.Open(d.dataDir, journal.Options{
		Fsync: d.mode, FsyncInterval: d.fsyncInterval,
		SnapshotRecords: d.snapshotRecords, SnapshotBytes: d.snapshotBytes,
		TruncateCorrupt: d.truncateCorrupt, Logf: warn,
	})
	if err != nil {
		return nil, nil, err
	}
	start := time.Now()
	cfg.Journal, cfg.Logf = j, warn
	d.journal = j
	eng, err = engine.Open(cfg)
	if err != nil {
		_ = j.Close()
		return nil, nil, err
	}
	log.Info("state loaded", "data_dir", d.dataDir, "fsync", d.mode.String(), "took", time.Since(start))
	return eng, func() {
		_ = eng.Close()
		if err := j.Close(); err != nil {
			jlog.Warn("closing the data directory", "error", err)
		}
	}, nil
}

// fsyncs is what the metrics read of the journal: nil in memory.
func (d *serveDurability) fsyncs() metrics.Journal {
	if d == nil || d.journal == nil {
		return nil
	}
	return d.journal
}
