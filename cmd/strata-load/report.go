package main

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// report gathers every phase's results.
type report struct {
	started time.Time
	cfg     config
	machine machineInfo
	disk    *diskResult
	loads   []loadResult
	idle    *idleResult
	tier    *tierResult
	compact *compactResult
	// compactRemote is the remote compaction and merge phase.
	compactRemote *remoteResult
	groups        *groupsResult
	cluster       *clusterResult
	txn           *txnResult
}

// err joins every phase failure.
func (r *report) err() error {
	var errs []error
	for _, l := range r.loads {
		if l.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.target, l.err))
		}
		for _, row := range l.rows {
			if row.err != nil {
				errs = append(errs, fmt.Errorf("%s: %s: %w", row.target, row.test, row.err))
			}
		}
	}
	if r.disk != nil {
		if r.disk.ddErr != nil {
			errs = append(errs, r.disk.ddErr)
		}
		if r.disk.syncErr != nil {
			errs = append(errs, r.disk.syncErr)
		}
	}
	if r.idle != nil && r.idle.err != nil {
		errs = append(errs, fmt.Errorf("idle partitions: %w", r.idle.err))
	}
	if r.tier != nil {
		errs = append(errs, r.tier.errs()...)
	}
	if r.compact != nil {
		errs = append(errs, r.compact.errs()...)
	}
	if r.compactRemote != nil {
		errs = append(errs, r.compactRemote.errs()...)
	}
	if r.groups != nil {
		errs = append(errs, r.groups.errs()...)
	}
	if r.cluster != nil {
		errs = append(errs, r.cluster.errs()...)
	}
	if r.txn != nil {
		errs = append(errs, r.txn.errs()...)
	}
	return errors.Join(errs...)
}

// markdown renders the report.
func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n## strata-load, %s\n\n", r.started.Format("2006-01-02 15:04 MST"))
	if r.cfg.load {
		fmt.Fprintf(&b, "%d-byte random records, no compression, %d partitions, %v per produce phase",
			r.cfg.recordSize, r.cfg.partitions, r.cfg.duration)
		if r.cfg.records > 0 {
			fmt.Fprintf(&b, " or %d records", r.cfg.records)
		}
		b.WriteString("; ")
	}
	fmt.Fprintf(&b, "franz-go %s. MB = 10^6 bytes, MiB = 2^20 bytes.\n", r.machine.franzGo)
	r.writeMachine(&b)
	r.writeLoad(&b)
	r.writeDisk(&b)
	r.writeResources(&b)
	r.writeTier(&b)
	r.writeCompact(&b)
	r.writeCompactRemote(&b)
	r.writeGroups(&b)
	r.writeCluster(&b)
	r.writeTxn(&b)
	if err := r.err(); err != nil {
		b.WriteString("\n### Failures\n\n")
		for _, e := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(&b, "- %s\n", cell(e, 0))
		}
	}
	return b.String()
}

// writeMachine renders the machine table.
func (r *report) writeMachine(b *strings.Builder) {
	m := r.machine
	b.WriteString("\n### Machine\n\n| | |\n|---|---|\n")
	fmt.Fprintf(b, "| CPU | %s, %d cores |\n", m.cpu, m.cores)
	fmt.Fprintf(b, "| load average (1 min) | %s at start, %s at end |\n", m.load, loadAverage())
	fmt.Fprintf(b, "| memory | %.1f GiB |\n", float64(m.memory)/(1<<30))
	fmt.Fprintf(b, "| kernel | %s |\n", m.kernel)
	fmt.Fprintf(b, "| temp dir filesystem | %s |\n", m.fs)
	goLine := m.goTool + " (load tool)"
	if m.goBroker != "" {
		goLine += ", " + m.goBroker + " (broker)"
	}
	fmt.Fprintf(b, "| Go | %s |\n", goLine)
}

// writeLoad renders the produce/consume table.
func (r *report) writeLoad(b *strings.Builder) {
	if len(r.loads) == 0 {
		return
	}
	b.WriteString("\n### Produce and consume\n\n")
	b.WriteString("| target | test | MB/s | records/s | p50 | p99 | p99.9 | notes |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, l := range r.loads {
		if l.err != nil {
			fmt.Fprintf(b, "| %s | (setup) | | | | | | FAILED: %s |\n", l.target, cell(l.err.Error(), 200))
		}
		for _, n := range l.notes {
			fmt.Fprintf(b, "| %s | (note) | | | | | | %s |\n", l.target, cell(n, 200))
		}
		for _, row := range l.rows {
			p50, p99, p999 := "", "", ""
			if row.lat != nil && row.lat.n > 0 {
				p50, p99, p999 = ms(row.lat.p50), ms(row.lat.p99), ms(row.lat.p999)
			}
			note := row.note
			if row.err != nil {
				note = strings.TrimPrefix(note+"; FAILED: "+cell(row.err.Error(), 200), "; ")
			}
			fmt.Fprintf(b, "| %s | %s | %.1f | %.0f | %s | %s | %s | %s |\n",
				row.target, row.test, row.mbps, row.recps, p50, p99, p999, note)
		}
	}
}

// writeDisk renders the disk-limit table.
func (r *report) writeDisk(b *strings.Builder) {
	d := r.disk
	if d == nil {
		return
	}
	b.WriteString("\n### Disk limit (temp dir)\n\n| measurement | MB/s | notes |\n|---|---:|---|\n")
	fmt.Fprintf(b, "| dd if=/dev/zero bs=1M count=512 conv=fdatasync (512 MiB, one fdatasync) | %.1f | %s |\n", d.ddMBps, errOr(d.ddNote, d.ddErr))
	fmt.Fprintf(b, "| 16 KiB write + fdatasync per write (Go) | %.1f | %s |\n", d.syncMBps,
		errOr(fmt.Sprintf("%.0f syncs/s; %s", d.syncsPerS, d.syncNote), d.syncErr))
}

// writeResources renders the broker memory and descriptor table.
func (r *report) writeResources(b *strings.Builder) {
	var rows []string
	for _, l := range r.loads {
		if l.peakRSS > 0 {
			rows = append(rows, fmt.Sprintf("| %s, during the load above | | %s | | |", l.target, mib(l.peakRSS)))
		}
	}
	if i := r.idle; i != nil {
		rows = append(rows, fmt.Sprintf("| idle: fresh broker, no topics | %s | | %d | |", mib(i.baseRSS), i.baseFDs))
		if i.createdRSS > 0 {
			rows = append(rows, fmt.Sprintf("| idle: %d partitions created, no records yet | %s | | %d | |",
				i.partitions, mib(i.createdRSS), i.createdFDs))
		}
		note := fmt.Sprintf("create %.1fs, one record each %.1fs", i.createTime.Seconds(), i.produceTime.Seconds())
		if i.logProblems > 0 {
			note += fmt.Sprintf("; broker logged %d warnings/errors", i.logProblems)
		}
		rss, hwm, fds := "", "", ""
		if i.rss > 0 {
			rss, hwm, fds = mib(i.rss), mib(i.hwm), fmt.Sprint(i.fds)
		}
		rows = append(rows, fmt.Sprintf("| idle: %d partitions (%d topics), one record each | %s | %s | %s | %s |",
			i.partitions, i.topics, rss, hwm, fds, errOr(note, i.err)))
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\n### Broker memory and descriptors\n\n")
	b.WriteString("| phase | RSS (VmRSS) | peak RSS (VmHWM) | open fds | notes |\n|---|---:|---:|---:|---|\n")
	b.WriteString(strings.Join(rows, "\n") + "\n")
}

// errOr returns note, or note followed by the failure.
func errOr(note string, err error) string {
	if err == nil {
		return note
	}
	return strings.TrimPrefix(note+"; FAILED: "+cell(err.Error(), 200), "; ")
}

// cell makes s safe for a Markdown table cell, cut to n runes (0: no limit).
func cell(s string, n int) string {
	s = strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
	if r := []rune(s); n > 0 && len(r) > n {
		s = string(r[:n]) + "…"
	}
	return s
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// mib formats bytes in MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
