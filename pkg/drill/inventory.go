package drill

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/edgebase"
)

// Unit kinds.
const (
	KindControl   = "control"
	KindAuth      = "auth"
	KindDO        = "do"
	KindNamespace = "namespace"
)

// UnitID names a unit: its kind and, for DOs and namespaces, its name.
type UnitID struct {
	Kind string `json:"kind"`
	Name string `json:"name,omitempty"`
}

func (u UnitID) String() string {
	if u.Name == "" {
		return u.Kind
	}
	return u.Kind + " " + u.Name
}

// ObjectSum is a storage object as the drill compares it.
type ObjectSum struct {
	Size        int64
	SHA256      string // "" when unknown (an archive without the object's bytes)
	ContentType string
}

// Inventory is what one side (the archive, or the restored target) holds.
type Inventory struct {
	Units   map[UnitID]Tables
	Objects map[string]ObjectSum
	// HasStorage: the archive carries object bytes (.tar.gz), so storage is
	// restored and compared.
	HasStorage bool
	// MaskedTypes counts target objects whose content type the server
	// would not show (0.4+): their types cannot be compared.
	MaskedTypes int64
}

// UnitIDs returns the units in a stable order.
func (inv *Inventory) UnitIDs() []UnitID {
	ids := make([]UnitID, 0, len(inv.Units))
	for id := range inv.Units {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if ids[i].Kind != ids[j].Kind {
			return ids[i].Kind < ids[j].Kind
		}
		return ids[i].Name < ids[j].Name
	})
	return ids
}

// ReadArchive reads the archive at path once, streaming, into an
// inventory. Auth shards (legacy AuthDO stubs, never restored) are left
// out, as are server-internal storage keys (a restore skips them).
func ReadArchive(ctx context.Context, path string) (*Inventory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	defer f.Close()
	format := archive.DetectFormat(path)
	v := &archiveVisitor{inv: &Inventory{Units: map[UnitID]Tables{}, Objects: map[string]ObjectSum{}, HasStorage: format == archive.TarGz}}
	_, err = archive.Read(ctx, f, format, v)
	if v.pending != nil {
		v.pw.CloseWithError(io.ErrUnexpectedEOF)
		<-v.pending
	}
	if err != nil {
		return nil, fmt.Errorf("drill: reading %s: %w", path, err)
	}
	return v.inv, nil
}

type archiveVisitor struct {
	archive.NopVisitor
	inv     *Inventory
	pw      *io.PipeWriter
	pending chan struct{}
	unit    UnitID
	tables  Tables
	err     error
}

func unitOf(ref archive.ValueRef) (UnitID, bool, bool) {
	switch ref.Section {
	case archive.SectionControlD1:
		return UnitID{Kind: KindControl}, false, true
	case archive.SectionAuthD1:
		return UnitID{Kind: KindAuth}, false, true
	case archive.SectionDatabase:
		return UnitID{Kind: KindDO, Name: ref.Name}, true, true
	case archive.SectionDataNamespace:
		return UnitID{Kind: KindNamespace, Name: ref.Name}, true, true
	}
	return UnitID{}, false, false
}

func (v *archiveVisitor) BeginValue(_ context.Context, ref archive.ValueRef) (io.Writer, error) {
	id, wrapped, ok := unitOf(ref)
	if !ok {
		return nil, nil
	}
	pr, pw := io.Pipe()
	v.pw, v.unit, v.pending = pw, id, make(chan struct{})
	go func() {
		defer close(v.pending)
		v.tables, v.err = readTables(pr, wrapped)
		if v.err != nil {
			pr.CloseWithError(v.err)
			return
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return pw, nil
}

func (v *archiveVisitor) EndValue(_ context.Context, ref archive.ValueRef, _ archive.ValueStats) error {
	if v.pending == nil {
		return nil
	}
	v.pw.Close()
	<-v.pending
	v.pending = nil
	if v.err != nil {
		return fmt.Errorf("%s: %w", ref, v.err)
	}
	v.inv.Units[v.unit] = v.tables
	return nil
}

func (v *archiveVisitor) StorageObject(_ context.Context, o archive.Object) error {
	if edgebase.IsInternalKey(o.Key) {
		return nil
	}
	prev := v.inv.Objects[o.Key]
	sum := ObjectSum{Size: o.Size, SHA256: o.SHA256, ContentType: o.ContentType}
	if sum.SHA256 == "" {
		sum.SHA256 = prev.SHA256 // a member read before backup.json
	}
	v.inv.Objects[o.Key] = sum
	return nil
}

func (v *archiveVisitor) StorageMember(_ context.Context, m archive.Member, r io.Reader) error {
	if edgebase.IsInternalKey(m.Key) {
		return nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return err
	}
	o := v.inv.Objects[m.Key]
	o.SHA256, o.Size = hex.EncodeToString(h.Sum(nil)), m.Size
	v.inv.Objects[m.Key] = o
	return nil
}
