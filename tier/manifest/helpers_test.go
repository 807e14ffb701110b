package manifest

import (
	"bytes"
	"context"
	"testing"
)

// nextEntry returns an entry for a new segment of span offsets right after
// m's end, uploaded at uploadEpoch, with a fresh upload id.
func nextEntry(m *Manifest, uploadEpoch int32, span, size, createdMs int64) Entry {
	base := m.EndOffset()
	return Entry{
		Key:            m.SegmentName(uploadEpoch, base, NewUploadID()).Key(),
		BaseOffset:     base,
		NextOffset:     base + span,
		RecordCount:    span,
		StoredSize:     size,
		RawSize:        size * 3,
		FirstTimestamp: createdMs - 1000,
		MaxTimestamp:   createdMs - 10,
		Epochs:         []EpochStart{{Epoch: uploadEpoch, StartOffset: base}},
		UploadEpoch:    uploadEpoch,
		CreatedMs:      createdMs,
	}
}

// upload writes e's segment object completely, as an uploader does before
// publishing.
func upload(t testing.TB, s *memStore, e Entry) {
	t.Helper()
	data := bytes.Repeat([]byte{byte(e.BaseOffset)}, int(e.StoredSize))
	if err := s.PutIfAbsent(context.Background(), e.Key, bytes.NewReader(data), e.StoredSize); err != nil {
		t.Fatal(err)
	}
}

// sampleManifest is a valid manifest exercising every field: three segments,
// one spanning two leader epochs, a moved log start and two deleted entries.
func sampleManifest() *Manifest {
	m := &Manifest{Topic: testTopic, Partition: 7, Epoch: 5, Seq: 9, Prev: ManifestID{Epoch: 4, Seq: 8}, CreatedMs: 1_700_000_100_000, LogStartOffset: 100}
	seg := func(base, next int64, epochs []EpochStart, upEpoch int32, id string) Entry {
		return Entry{
			Key:        SegmentName{Topic: testTopic, Partition: 7, BaseOffset: base, Epoch: upEpoch, UploadID: id}.Key(),
			BaseOffset: base, NextOffset: next, RecordCount: next - base - 1,
			StoredSize: 1000 + base, RawSize: 4000 + base,
			FirstTimestamp: 1_700_000_000_000 + base, MaxTimestamp: 1_700_000_000_500 + base,
			Epochs: epochs, UploadEpoch: upEpoch, CreatedMs: 1_700_000_050_000 + base,
		}
	}
	m.Entries = []Entry{
		seg(90, 200, []EpochStart{{Epoch: 2, StartOffset: 90}}, 2, "00000000000000a1"),
		seg(200, 350, []EpochStart{{Epoch: 2, StartOffset: 200}, {Epoch: 4, StartOffset: 310}}, 4, "00000000000000a2"),
		seg(350, 351, []EpochStart{{Epoch: 5, StartOffset: 350}}, 5, "00000000000000a3"),
	}
	m.Entries[2].FirstTimestamp, m.Entries[2].MaxTimestamp = -1, -1
	m.Deleted = []Deleted{
		{Key: SegmentName{Topic: testTopic, Partition: 7, BaseOffset: 0, Epoch: 1, UploadID: "00000000000000d1"}.Key(), Size: 777, RemovedMs: 1_700_000_090_000},
		{Key: SegmentName{Topic: testTopic, Partition: 7, BaseOffset: 90, Epoch: 1, UploadID: "00000000000000d2"}.Key(), Size: 778, RemovedMs: 1_700_000_095_000},
	}
	return m
}
