package archive

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"slices"
)

// storageIndex matches tar storage members against storage.objects in
// memory bounded by the object count (24 bytes per object), never holding
// keys: each side is recorded as a seeded 64-bit key hash, the size and the
// first 8 bytes of the object's SHA-256. Whichever side comes second is
// checked against the first as it streams, so most problems are reported
// with the key; what is left unmatched at the end is reported by count.
type storageIndex struct {
	seed    maphash.Seed
	listing []objRec // storage.objects; sorted by h once listed
	early   []objRec // members read before backup.json
	listed  bool     // backup.json has been read
	prevKey string   // to report adjacent duplicate keys by name
	missing int      // listing entries without a member (set by finish)
}

type objRec struct {
	h    uint64
	sha  uint64 // first 8 bytes of the SHA-256, when recHasSHA
	size int64  // size | flags
}

const (
	recSeen   = 1 << 62
	recHasSHA = 1 << 61
	recSize   = 1<<53 - 1
)

func (r *objRec) bytes() int64 { return r.size & recSize }

func newStorageIndex() *storageIndex { return &storageIndex{seed: maphash.MakeSeed()} }

func (x *storageIndex) hash(key string) uint64 { return maphash.String(x.seed, key) }

func shaPrefix(sum []byte) uint64 { return binary.BigEndian.Uint64(sum[:8]) }

func find(recs []objRec, h uint64) *objRec {
	i, ok := slices.BinarySearchFunc(recs, h, func(r objRec, h uint64) int {
		switch {
		case r.h < h:
			return -1
		case r.h > h:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return &recs[i]
}

func sortRecs(recs []objRec) (dups int) {
	slices.SortFunc(recs, func(a, b objRec) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return 0
	})
	for i := 1; i < len(recs); i++ {
		if recs[i].h == recs[i-1].h {
			dups++
		}
	}
	return dups
}

const msgStorage = "Backup file has invalid storage metadata."

// beginListing is called when backup.json starts.
func (x *storageIndex) beginListing() error {
	if n := sortRecs(x.early); n > 0 {
		return &Error{Msg: "duplicate archive members", Detail: fmt.Sprintf("%d storage members repeat a key", n), Offset: -1, Err: ErrInvalid}
	}
	return nil
}

// addObject records one storage.objects entry. verified reports that a
// member read before backup.json matched its listed SHA-256.
func (x *storageIndex) addObject(o Object, path string, off int64) (verified bool, err error) {
	// Listings are usually sorted, so most duplicates are adjacent and can
	// be named; the others are found by count in endListing.
	if len(x.listing) > 0 && o.Key == x.prevKey {
		return false, invalidf(msgStorage, path, off, "key %q is listed twice", o.Key)
	}
	x.prevKey = o.Key
	rec := objRec{h: x.hash(o.Key), size: o.Size}
	if o.SHA256 != "" {
		sum, _ := hex.DecodeString(o.SHA256) // validated by the walker
		rec.sha, rec.size = shaPrefix(sum), rec.size|recHasSHA
	}
	if m := find(x.early, rec.h); m != nil {
		if m.size&recSeen != 0 {
			return false, invalidf(msgStorage, path, off, "key %q is listed twice", o.Key)
		}
		if m.bytes() != o.Size {
			return false, invalidf("archive member size differs from storage.objects", path, off,
				"member for %q has %d bytes, storage.objects says %d", o.Key, m.bytes(), o.Size)
		}
		if rec.size&recHasSHA != 0 {
			if m.sha != rec.sha {
				return false, invalidf("archive member content differs from storage.objects", path, off, "sha256 of the member for %q differs", o.Key)
			}
			verified = true
		}
		m.size |= recSeen
		rec.size |= recSeen
	}
	x.listing = append(x.listing, rec)
	return verified, nil
}

// endListing is called when backup.json has been read completely.
func (x *storageIndex) endListing() error {
	x.listed = true
	x.prevKey = ""
	if n := sortRecs(x.listing); n > 0 {
		return &Error{Msg: msgStorage, Path: "storage.objects", Detail: fmt.Sprintf("%d keys are listed more than once", n), Offset: -1, Err: ErrInvalid}
	}
	extra := 0
	for i := range x.early {
		if x.early[i].size&recSeen == 0 {
			extra++
		}
	}
	x.early = nil
	if extra > 0 {
		return &Error{Msg: "archive has members not listed in storage.objects",
			Detail: fmt.Sprintf("%d storage members before backup.json are not in storage.objects", extra), Offset: -1, Err: ErrInvalid}
	}
	return nil
}

// member checks a storage member read after backup.json. It returns the
// matching record, or ignore for an unlisted AppleDouble file.
func (x *storageIndex) member(name, key string, size int64, appleDouble bool) (rec *objRec, ignore bool, err error) {
	rec = find(x.listing, x.hash(key))
	switch {
	case rec == nil && appleDouble:
		return nil, true, nil
	case rec == nil:
		return nil, false, &Error{Msg: "archive member is not listed in storage.objects", Path: name,
			Detail: fmt.Sprintf("key %q has no storage.objects entry", key), Offset: -1, Err: ErrInvalid}
	case rec.size&recSeen != 0:
		return nil, false, &Error{Msg: "duplicate archive member", Path: name, Detail: fmt.Sprintf("key %q appears twice", key), Offset: -1, Err: ErrInvalid}
	case rec.bytes() != size:
		return nil, false, &Error{Msg: "archive member size differs from storage.objects", Path: name,
			Detail: fmt.Sprintf("member has %d bytes, storage.objects says %d", size, rec.bytes()), Offset: -1, Err: ErrInvalid}
	}
	rec.size |= recSeen
	return rec, false, nil
}

// addEarly records a member read before backup.json.
func (x *storageIndex) addEarly(key string, size int64, sum []byte) {
	x.early = append(x.early, objRec{h: x.hash(key), size: size | recHasSHA, sha: shaPrefix(sum)})
}

// finish reports listing entries that never got a member.
func (x *storageIndex) finish() error {
	for i := range x.listing {
		if x.listing[i].size&recSeen == 0 {
			x.missing++
		}
	}
	if x.missing > 0 {
		return &Error{Msg: "storage objects missing from the archive",
			Detail: fmt.Sprintf("%d storage.objects entries have no storage/ member", x.missing), Offset: -1, Err: ErrInvalid}
	}
	return nil
}

// missingHashes returns the key hashes of listing entries without a member,
// so a second pass can name them.
func (x *storageIndex) missingHashes(limit int) []uint64 {
	var hs []uint64
	for i := range x.listing {
		if x.listing[i].size&recSeen == 0 && len(hs) < limit {
			hs = append(hs, x.listing[i].h)
		}
	}
	return hs
}
