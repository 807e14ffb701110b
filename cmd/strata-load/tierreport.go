package main

import (
	"fmt"
	"strings"
	"time"
)

// errs returns every failure of the tier phase.
func (t *tierResult) errs() []error {
	var errs []error
	if t.err != nil {
		errs = append(errs, fmt.Errorf("tier: %w", t.err))
	}
	for _, u := range t.uploads {
		if u.err != nil {
			errs = append(errs, fmt.Errorf("tier: upload %s: %w", u.topic, u.err))
		}
	}
	for _, r := range t.reads {
		for _, g := range r.gets {
			if g.err != nil {
				errs = append(errs, fmt.Errorf("tier: %s %s: %w", r.topic, g.how, g.err))
			}
		}
		if r.replay != nil && r.replay.err != nil {
			errs = append(errs, fmt.Errorf("tier: replay %s: %w", r.topic, r.replay.err))
		}
	}
	if sh := t.shaped; sh != nil {
		for _, r := range sh.rows {
			for _, g := range r.gets {
				if g.err != nil {
					errs = append(errs, fmt.Errorf("tier: S3-like %s %s: %w", r.topic, g.how, g.err))
				}
			}
			if r.replay != nil && r.replay.err != nil {
				errs = append(errs, fmt.Errorf("tier: S3-like replay %s: %w", r.topic, r.replay.err))
			}
		}
	}
	if c := t.cold; c != nil {
		if c.err != nil {
			errs = append(errs, fmt.Errorf("tier: cold reads: %w", c.err))
		}
		for _, rd := range c.reads {
			if rd.err != nil {
				errs = append(errs, fmt.Errorf("tier: cold read %s[%d]@%d: %w", rd.topic, rd.partition, rd.offset, rd.err))
			}
		}
	}
	return errs
}

// writeTier renders the tiered-storage tables.
func (r *report) writeTier(b *strings.Builder) {
	t := r.tier
	if t == nil {
		return
	}
	b.WriteString("\n### Tiered storage (versitygw on loopback)\n\n")
	fmt.Fprintf(b, "Broker → counting HTTP proxy (in the load tool) → versitygw posix backend in the temp dir. "+
		"%d MB of record values per data kind, %d partition(s), segment.bytes=%s, local.retention.bytes=0, "+
		"--tier-check-interval %v, --tier-upload-interval %v; acks=-1 idempotent producer. "+
		"\"log\" bytes are the record batches as the broker stores them locally (the segment objects' raw size).\n",
		t.mb, t.partitions, mibOrBytes(t.segmentBytes), tierCheckInterval, tierUploadInterval)
	if t.err != nil {
		fmt.Fprintf(b, "\nFAILED: %s\n", cell(t.err.Error(), 400))
	}
	writeTierUploads(b, t)
	writeTierReads(b, t)
	writeTierCold(b, t)
	writeTierShaped(b, t)
	writeTierRequests(b, t)
	var notes []string
	if t.peakRSS > 0 {
		notes = append(notes, fmt.Sprintf("broker peak RSS (VmHWM) before the restart: %s", mib(t.peakRSS)))
	}
	if t.logProblems > 0 {
		notes = append(notes, fmt.Sprintf("the broker logged %d warning/error lines (see stderr)", t.logProblems))
	} else {
		notes = append(notes, "the broker logged no warnings or errors")
	}
	notes = append(notes, t.notes...)
	b.WriteString("\n")
	for _, n := range notes {
		fmt.Fprintf(b, "- %s\n", cell(n, 0))
	}
}

func writeTierUploads(b *strings.Builder, t *tierResult) {
	if len(t.uploads) == 0 {
		return
	}
	b.WriteString("\n#### Upload\n\n")
	b.WriteString("*Tiered while producing*: a new tiered topic; clocks start at the first produce call. " +
		"*Backlog*: the reference topic below, produced without tiering, then `remote.storage.enable=true` and `local.retention.bytes=0` set with " +
		"IncrementalAlterConfigs; clocks start at that request. \"Sealed segments in bucket after\": until the remote end offset " +
		"(ListOffsets v9, timestamp -5) reached the base of the segment that was active when production stopped; upload MB/s is the log bytes " +
		"of those segments over that time. \"Fully tiered after\": until the remote end reached the log end and the earliest local offset (-4) " +
		"did too (the tail segment is rolled by --tier-upload-interval). Stored = bytes of the segment objects; PUT-class requests = PUT, " +
		"UploadPart, CreateMultipartUpload and CompleteMultipartUpload, of segment objects and manifests.\n\n")
	b.WriteString("| data | produced | produce MB/s | sealed segments in bucket after | upload MB/s (log) | fully tiered after | log MB → stored MB | stored / produced | segment objects (chunks, stored raw) | PUT-class requests | per GB of log | notes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, u := range t.uploads {
		if u.err != nil && u.inv.raw == 0 {
			fmt.Fprintf(b, "| %s, %s | %.0f MB | %.1f | | | | | | | | | FAILED: %s |\n", u.kind.about, u.how,
				float64(u.valueBytes)/1e6, rate(float64(u.valueBytes)/1e6, u.produceTime), cell(u.err.Error(), 300))
			continue
		}
		puts := u.reqs.calls(putClasses)
		note := fmt.Sprintf("%d records; requests: %s; %v; broker %.2f CPU-s per GB of log", u.records, u.reqs, u.cpu, u.cpu.brokerPerGB(u.inv.raw))
		if u.inv.orphans > 0 {
			note += fmt.Sprintf("; %d extra segment objects (repeated uploads)", u.inv.orphans)
		}
		if u.err != nil {
			note += "; FAILED: " + cell(u.err.Error(), 200)
		}
		fmt.Fprintf(b, "| %s, %s | %.0f MB | %s | %.1f s | %.1f | %.1f s | %.1f → %.1f | %.3f | %d (%d, %d) | %d | %.1f | %s |\n",
			u.kind.about, u.how, float64(u.valueBytes)/1e6, produceRate(u),
			u.sealedTime.Seconds(), rate(float64(u.sealedBytes)/1e6, u.sealedTime), u.tieredTime.Seconds(),
			float64(u.inv.raw)/1e6, float64(u.inv.stored)/1e6, ratio(u.inv.stored, u.valueBytes),
			len(u.inv.segs), u.inv.chunks, u.inv.rawChunk, puts, perGB(puts, u.inv.raw), cell(note, 0))
	}
}

func writeTierReads(b *strings.Builder, t *tierResult) {
	if len(t.reads) == 0 {
		return
	}
	b.WriteString("\n#### Replay vs raw GET of the same objects\n\n")
	b.WriteString("Raw GETs: minio-go GETs of every segment object of the topic (whole objects, bytes discarded), median of several passes. " +
		"Replay: one kgo consumer from offset 0 through the broker, whose read cache is empty (nothing had been read). " +
		"Objects MB/s = bytes of the segment objects / time, for both. Reference: the same consumer reading the same amount of the same data " +
		"from a topic without tiering (local log in the page cache). Replay again: the same consumer once more, the chunks now in the broker's on-disk read cache. " +
		"The last column is the replay's objects MB/s (records MB/s for the last two rows) as a share of the row's.\n\n")
	b.WriteString("| data | read | objects MB/s | records MB/s | time | replay / this | notes |\n|---|---|---:|---:|---:|---:|---|\n")
	for _, rr := range t.reads {
		rp := rr.replay
		writeGetsAndReplay(b, rr.kind, rr.stored, rr.chunks, rr.gets, rp)
		if a := rr.again; a != nil {
			cmp := ""
			if rp != nil && rp.err == nil && a.err == nil {
				cmp = fmt.Sprintf("%.0f %%", 100*rp.st.mbps()/a.st.mbps())
			}
			note := fmt.Sprintf("%d records; %s; object requests: %s; %v; broker %.2f CPU-s per GB of records", a.st.records, fetchNote(a, rr.chunks), a.reqs, a.cpu, a.cpu.brokerPerGB(a.st.bytes))
			fmt.Fprintf(b, "| %s | replay again (chunks in the broker's read cache) | %.1f | %.1f | %.2f s | %s | %s |\n", rr.kind.name,
				rate(float64(rr.stored)/1e6, a.st.elapsed), a.st.mbps(), a.st.elapsed.Seconds(), cmp, errOr(note, a.err))
		}
		if l := rr.local; l != nil {
			cmp := ""
			if rp != nil && rp.err == nil && l.err == nil {
				cmp = fmt.Sprintf("%.0f %%", 100*rp.st.mbps()/l.st.mbps())
			}
			note := fmt.Sprintf("%d records; %s; %v; broker %.2f CPU-s per GB of records", l.st.records, fetchNote(l, 0), l.cpu, l.cpu.brokerPerGB(l.st.bytes))
			fmt.Fprintf(b, "| %s | reference: same data, topic without tiering | | %.1f | %.2f s | %s | %s |\n", rr.kind.name,
				l.st.mbps(), l.st.elapsed.Seconds(), cmp, errOr(note, l.err))
		}
	}
}

func writeTierShaped(b *strings.Builder, t *tierResult) {
	sh := t.shaped
	if sh == nil || len(sh.rows) == 0 {
		return
	}
	fmt.Fprintf(b, "\n#### Replay against an S3-like store (the proxy adds %s)\n\n", sh.shape)
	b.WriteString("The same topics once more, the broker restarted with an empty read cache, every request through the proxy now shaped like a remote object store " +
		"(the latency before each response, each response body paced to the bandwidth). Raw GETs: one pass of minio-go GETs of every segment object through the same proxy. " +
		"The last column is the replay's objects MB/s as a share of the row's.\n\n")
	b.WriteString("| data | read | objects MB/s | records MB/s | time | replay / this | notes |\n|---|---|---:|---:|---:|---:|---|\n")
	for _, r := range sh.rows {
		writeGetsAndReplay(b, r.kind, r.stored, r.chunks, r.gets, r.replay)
	}
}

// writeGetsAndReplay writes the raw-GET rows of a topic's objects, each
// compared with the replay, then the replay's row.
func writeGetsAndReplay(b *strings.Builder, kind tierData, stored int64, chunks int, gets []tierGet, rp *tierReplay) {
	var replayObj float64
	if rp != nil && rp.err == nil {
		replayObj = rate(float64(stored)/1e6, rp.st.elapsed)
	}
	for _, g := range gets {
		cmp := ""
		if replayObj > 0 && g.err == nil {
			cmp = fmt.Sprintf("%.0f %%", 100*replayObj/g.mbps())
		}
		note := fmt.Sprintf("%.1f MB", float64(g.bytes)/1e6)
		if g.passes > 1 {
			note += fmt.Sprintf(", median of %d passes", g.passes)
		}
		fmt.Fprintf(b, "| %s | %s | %.1f | | %.3f s | %s | %s |\n", kind.name, g.how, g.mbps(), g.elapsed.Seconds(), cmp, errOr(note, g.err))
	}
	if rp != nil {
		note := fmt.Sprintf("%d records; %s; object requests: %s; %v; broker %.2f CPU-s per GB of records", rp.st.records, fetchNote(rp, chunks), rp.reqs, rp.cpu, rp.cpu.brokerPerGB(rp.st.bytes))
		fmt.Fprintf(b, "| %s | **replay, kgo consumer from offset 0** | **%.1f** | %.1f | %.2f s | | %s |\n", kind.name,
			replayObj, rp.st.mbps(), rp.st.elapsed.Seconds(), errOr(note, rp.err))
	}
}

// fetchNote describes the consumer's Fetch responses.
func fetchNote(r *tierReplay, chunks int) string {
	if r.fetches == 0 {
		return "no Fetch responses counted"
	}
	s := fmt.Sprintf("%d Fetch responses of %.0f KiB on average", r.fetches, float64(r.fetchBytes)/float64(r.fetches)/1024)
	if chunks > 0 {
		s += fmt.Sprintf(" (%.1f per chunk)", float64(r.fetches)/float64(chunks))
	}
	return s
}

func writeTierCold(b *strings.Builder, t *tierResult) {
	c := t.cold
	if c == nil {
		return
	}
	b.WriteString("\n#### Cold random reads (broker restarted, `tier-cache` deleted)\n\n")
	b.WriteString("One Fetch (v12, max wait 5 s, 1 MiB) per read at a random offset, timed until the response; it must start with the batch holding the offset. Requests are those the proxy saw from the request until 300 ms after the response.\n\n")
	if c.err != nil {
		fmt.Fprintf(b, "FAILED: %s\n\n", cell(c.err.Error(), 300))
	}
	b.WriteString("| read | n | time to first record p50 | max | segment-object GETs per read (mean / max) | other requests | failed |\n|---|---:|---:|---:|---:|---|---:|\n")
	for _, g := range []struct {
		name  string
		known bool
	}{
		{"first read in a segment (footer not cached)", false},
		{"another chunk of a segment read before (footer cached)", true},
	} {
		var lat []time.Duration
		var gets, maxGets, failed int64
		others := reqCounts{}
		n := 0
		for _, rd := range c.reads {
			if rd.footerKnown != g.known {
				continue
			}
			n++
			if rd.err != nil {
				failed++
				continue
			}
			lat = append(lat, rd.elapsed)
			sg := rd.reqs.calls(getClasses, keyKindSegment)
			gets += sg
			maxGets = max(maxGets, sg)
			for cl, kinds := range rd.reqs {
				for k, s := range kinds {
					if k == keyKindSegment && (cl == reqGet || cl == reqGetRange || cl == reqHead) {
						continue
					}
					if others[cl] == nil {
						others[cl] = map[string]opStat{}
					}
					o := others[cl][k]
					o.calls += s.calls
					others[cl][k] = o
				}
			}
		}
		if n == 0 {
			continue
		}
		s := summarize(lat)
		fmt.Fprintf(b, "| %s | %d | %s | %s | %.2f / %d | %s | %d |\n", g.name, n, ms(s.p50), ms(maxDur(lat)),
			float64(gets)/float64(max(len(lat), 1)), maxGets, others, failed)
	}
	b.WriteString("\n<details><summary>every cold read</summary>\n\n| topic | partition | offset | chunk | footer cached | time | requests |\n|---|---:|---:|---:|---|---:|---|\n")
	for _, rd := range c.reads {
		fmt.Fprintf(b, "| %s | %d | %d | %d | %v | %s | %s |\n", rd.topic, rd.partition, rd.offset, rd.chunk, rd.footerKnown,
			ms(rd.elapsed), errOr(rd.reqs.String(), rd.err))
	}
	b.WriteString("\n</details>\n")
	fmt.Fprintf(b, "\nRequests while the restarted broker opened its partitions (before the first read): %s.\n", c.startup)
}

func writeTierRequests(b *strings.Builder, t *tierResult) {
	type row struct {
		phase string
		gb    float64
		what  string
		reqs  reqCounts
	}
	var rows []row
	for _, u := range t.uploads {
		if u.err == nil {
			rows = append(rows, row{"upload " + u.topic, float64(u.inv.raw) / 1e9, "log", u.reqs})
		}
	}
	for _, rr := range t.reads {
		if rp := rr.replay; rp != nil && rp.err == nil {
			rows = append(rows, row{"replay " + rr.kind.name, float64(rp.st.bytes) / 1e9, "record values", rp.reqs})
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("\n#### Object-store requests\n\n")
	b.WriteString("| phase | GB | PUT | PUT part | POST (create, complete) | GET / GET range | HEAD | LIST | DELETE | failed | total | per GB |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		c := r.reqs
		fmt.Fprintf(b, "| %s | %.3f (%s) | %d | %d | %d, %d | %d / %d | %d | %d | %d | %d | %d | %.1f |\n",
			r.phase, r.gb, r.what, c.calls([]reqClass{reqPut}), c.calls([]reqClass{reqPutPart}),
			c.calls([]reqClass{reqMPUCreate}), c.calls([]reqClass{reqMPUComplete}),
			c.calls([]reqClass{reqGet}), c.calls([]reqClass{reqGetRange}), c.calls([]reqClass{reqHead}),
			c.calls([]reqClass{reqList}), c.calls([]reqClass{reqDelete}), c.errorCount(), c.total(),
			perGB(c.total(), int64(r.gb*1e9)))
	}
}

// produceRate formats the upload's produce MB/s; a backlog upload has
// none (its data was produced before the clock started).
func produceRate(u tierUpload) string {
	if u.produceTime == 0 {
		return "(before)"
	}
	return fmt.Sprintf("%.1f", rate(float64(u.valueBytes)/1e6, u.produceTime))
}

// ratio returns a/b, 0 when b is 0.
func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// perGB returns n per 10^9 bytes.
func perGB(n, bytes int64) float64 {
	if bytes == 0 {
		return 0
	}
	return float64(n) / (float64(bytes) / 1e9)
}

// maxDur returns the largest duration.
func maxDur(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

// mibOrBytes formats a size as MiB when it is a whole number of MiB.
func mibOrBytes(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprint(n)
}
