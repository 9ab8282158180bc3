package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/blob"
	"github.com/edgevault/edgevault/pkg/pipeline"
)

// Assembler is the backup's finish step: it turns a job whose tasks are
// all done into one archive, a v1.1 .json, or a .tar.gz when storage
// objects were captured. The .tar.gz is a concatenation of gzip members
// (backup.json, one member per storage range written by the workers, the
// tar trailer), so the storage bytes are never recompressed here; stores
// that can join objects server-side (S3 UploadPartCopy) do it without
// moving the bytes through this process at all.
//
// Its output is a function of the job's stored outcomes alone: the
// outputs of the delivery each outcome names, the timestamp and archive
// name fixed by the job's start time. Two assemblies of one job (one that
// lost its lease and its successor) therefore write the same bytes.
type Assembler struct {
	Jobs *pipeline.Jobs
	// ComposeAbove: when the store is a Composer and the storage members
	// exceed this many bytes, join them server-side instead of streaming.
	// The manifest then carries per-member SHA-256s instead of one for the
	// whole file. Negative disables composing.
	ComposeAbove int64
	Log          *slog.Logger
	// Sealer, when set, completes the manifest (chain link, signature)
	// before it is written.
	Sealer ManifestSealer
	// Repo is the repository of repository-mode jobs, and Version the
	// edgevault version their snapshots record.
	Repo    RepositoryOpener
	Version string
}

// ManifestSealer completes a manifest before it is written
// (provenance.Sealer: hash chain and signature).
type ManifestSealer interface {
	Seal(ctx context.Context, m *archive.Manifest) error
}

var _ pipeline.Finisher = (*Assembler)(nil)

// Finish implements pipeline.Finisher.
func (a *Assembler) Finish(ctx context.Context, job *events.Job) (pipeline.Outcome, error) {
	if job.Options.Repository {
		out, err := a.finishRepository(ctx, job)
		if err != nil {
			return pipeline.Outcome{}, fmt.Errorf("snapshot of job %s: %w", job.ID, err)
		}
		return out, nil
	}
	res, err := a.assemble(ctx, job)
	if err != nil {
		return pipeline.Outcome{}, fmt.Errorf("assembling job %s: %w", job.ID, err)
	}
	return pipeline.Outcome{Archive: res.archive, Manifest: res.manifest, ArchiveSize: res.size, Warnings: res.warnings}, nil
}

type assembled struct {
	archive, manifest string
	size              int64
	warnings          []string
}

// part is one storage member to append.
type member struct {
	key    string
	size   int64
	sha256 string
}

// output returns the output prefix of the delivery that finished t.
func (a *Assembler) output(ctx context.Context, t events.Task) (string, error) {
	st, ok, err := a.Jobs.Done(ctx, t)
	if err != nil {
		return "", fmt.Errorf("%s: %w", t.Unit, err)
	}
	if !ok || st.Output == "" {
		return "", fmt.Errorf("%s: no recorded output", t.Unit)
	}
	return st.Output, nil
}

func (a *Assembler) assemble(ctx context.Context, job *events.Job) (assembled, error) {
	// Pass 1 over the plan: the storage members and their objects count,
	// and what the tasks observed about the server.
	var members []member
	var objects, masked int64
	configOut := ""
	err := a.Jobs.EachTask(ctx, job.ID, func(t events.Task) error {
		if t.Kind != events.TaskStorage && t.Kind != events.TaskConfig {
			return nil
		}
		out, err := a.output(ctx, t)
		if err != nil {
			return err
		}
		if t.Kind == events.TaskConfig {
			configOut = out
			return nil
		}
		var idx StorageIndex
		if err := a.Jobs.GetJSON(ctx, out+IndexName, &idx); err != nil {
			return fmt.Errorf("%s: %w", t.Unit, err)
		}
		members = append(members, member{key: out + PartName, size: idx.Size, sha256: idx.SHA256})
		objects += int64(len(idx.Objects))
		masked += idx.Masked
		return nil
	})
	if err != nil {
		return assembled{}, err
	}
	man := &archive.Manifest{Version: archive.ManifestVersion, Job: job.ID, Source: job.Source, SourceURL: job.Target}
	warning, err := a.observe(ctx, job.ID, configOut, masked, man)
	if err != nil {
		return assembled{}, err
	}
	tarball := objects > 0 // an empty bucket gives a .json without storage (spec 8.8)
	name, err := a.reserve(ctx, job.ID, job.Started, tarball)
	if err != nil {
		return assembled{}, err
	}
	final := a.Jobs.ArchiveKey(name)
	man.Archive = name
	if !tarball {
		hw, err := a.putHashed(ctx, final, func(w io.Writer) error { return a.writeDocument(ctx, job, w, man) })
		if err != nil {
			return assembled{}, err
		}
		man.Format, man.Size, man.SHA256 = archive.JSON, hw.n, hw.sum()
	} else if err := a.assembleTarGz(ctx, job, final, members, man); err != nil {
		return assembled{}, err
	}
	man.CreatedAt = job.Started.UTC()
	if a.Sealer != nil {
		if err := a.Sealer.Seal(ctx, man); err != nil {
			return assembled{}, err
		}
	}
	var buf bytes.Buffer
	if err := archive.EncodeManifest(&buf, *man); err != nil {
		return assembled{}, err
	}
	mkey := a.Jobs.ArchiveKey(archive.ManifestName(name))
	if err := a.Jobs.Store.Put(ctx, mkey, &buf); err != nil {
		return assembled{}, err
	}
	res := assembled{archive: final, manifest: mkey, size: man.Size}
	if warning != "" {
		res.warnings = []string{warning}
	}
	return res, nil
}

// maxNameShift bounds how many later seconds reserve tries when the name
// of a job's start second is taken.
const maxNameShift = 60

// reserve claims an archive name for this job and returns it. Names have
// one-second resolution, so two jobs started in the same second want the
// same name (spec A.9): the later one to assemble takes the next free
// second instead of failing after all its work, which --resume could never
// repair. A name whose marker belongs to this job is its own earlier,
// interrupted attempt, so a repeated assembly finds the same name; a file
// another tool put under a name is never overwritten.
func (a *Assembler) reserve(ctx context.Context, job string, started time.Time, tarball bool) (string, error) {
	for shift := range maxNameShift {
		name := archive.FileName(started.Add(time.Duration(shift)*time.Second), tarball)
		marker := a.Jobs.Staging + "names/" + name
		err := a.Jobs.Store.Create(ctx, marker, strings.NewReader(job))
		if errors.Is(err, blob.ErrExist) {
			rc, gerr := a.Jobs.Store.Get(ctx, marker)
			if gerr != nil {
				return "", gerr
			}
			owner, _ := io.ReadAll(io.LimitReader(rc, 256))
			rc.Close()
			if string(owner) == job {
				return name, nil
			}
			continue // another job's archive
		}
		if err != nil {
			return "", err
		}
		if _, err := a.Jobs.Store.Stat(ctx, a.Jobs.ArchiveKey(name)); err == nil {
			// Not ours and not to be overwritten: hand the marker to the
			// file, so a repeated assembly skips this name too.
			if err := a.Jobs.Store.Put(ctx, marker, strings.NewReader("(a file that no job wrote)")); err != nil {
				return "", err
			}
			continue
		} else if !errors.Is(err, blob.ErrNotExist) {
			return "", err
		}
		return name, nil
	}
	return "", pipeline.Permanent(fmt.Errorf("every archive name from %s on for %d seconds is taken", archive.FileName(started, tarball), maxNameShift))
}

// assembleTarGz writes the .tar.gz and fills man's format, size and
// hashes (and, through writeDocument, its counts).
func (a *Assembler) assembleTarGz(ctx context.Context, job *events.Job, final string, members []member, man *archive.Manifest) error {
	man.Format = archive.TarGz
	// backup.json first, to learn its size for the tar header.
	docKey := a.Jobs.StagingKey(job.ID, "assembly", "backup.json")
	doc, err := a.putHashed(ctx, docKey, func(w io.Writer) error { return a.writeDocument(ctx, job, w, man) })
	if err != nil {
		return err
	}
	docSize := doc.n
	headKey, trailerKey := a.Jobs.StagingKey(job.ID, "assembly", "head.gz"), a.Jobs.StagingKey(job.ID, "assembly", "trailer.gz")
	head, err := a.putHashed(ctx, headKey, func(w io.Writer) error {
		doc, err := a.Jobs.Store.Get(ctx, docKey)
		if err != nil {
			return err
		}
		defer doc.Close()
		return archive.WriteHeadMember(w, doc, docSize, job.Started)
	})
	if err != nil {
		return err
	}
	trailer, err := a.putHashed(ctx, trailerKey, archive.WriteTrailerMember)
	if err != nil {
		return err
	}
	all := append([]member{{key: headKey, size: head.n, sha256: head.sum()}}, members...)
	all = append(all, member{key: trailerKey, size: trailer.n, sha256: trailer.sum()})
	var storageBytes, off int64
	for _, m := range members {
		storageBytes += m.size
	}
	for _, m := range all {
		man.Parts = append(man.Parts, archive.ManifestPart{Offset: off, Size: m.size, SHA256: m.sha256})
		off += m.size
	}
	man.Size = off

	if c, ok := a.Jobs.Store.(pipeline.Composer); ok && a.ComposeAbove >= 0 && storageBytes > a.ComposeAbove {
		keys := make([]string, len(all))
		for i, m := range all {
			keys[i] = m.key
		}
		if err := c.Compose(ctx, final, keys); err != nil {
			return err
		}
		return nil
	}
	hw, err := a.putHashed(ctx, final, func(w io.Writer) error {
		for _, m := range all {
			if err := a.copyBlob(ctx, w, m.key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if hw.n != man.Size {
		return fmt.Errorf("assembled %d bytes, members add up to %d", hw.n, man.Size)
	}
	man.SHA256 = hw.sum()
	return nil
}

// writeDocument streams backup.json from the parts, in plan order, and
// counts what it writes into man.
func (a *Assembler) writeDocument(ctx context.Context, job *events.Job, w io.Writer, man *archive.Manifest) error {
	hdr := archive.Header{Version: archive.Version, Timestamp: archive.FormatTimestamp(job.Started), Source: job.Source}
	jw, err := archive.NewJSONWriter(w, hdr)
	if err != nil {
		return err
	}
	man.BackupTimestamp = hdr.Timestamp
	err = eachAhead(ctx, a.Jobs, job.ID, ReadAhead, a.preparePart, func(t events.Task, p preparedPart) error {
		return writePart(jw, man, t, p)
	}, preparedPart.close)
	if err != nil {
		if errors.Is(err, archive.ErrInvalid) {
			return pipeline.Permanent(err)
		}
		return err
	}
	return jw.Close()
}

// preparedPart is what writeDocument needs of one task, read ahead: the
// index of a storage range, the values of the secrets, or the open part.
type preparedPart struct {
	idx     StorageIndex
	secrets map[string]string
	rc      io.ReadCloser
}

func (p preparedPart) close() {
	if p.rc != nil {
		p.rc.Close()
	}
}

func (a *Assembler) preparePart(ctx context.Context, t events.Task) (preparedPart, error) {
	var p preparedPart
	out, err := a.output(ctx, t)
	if err != nil {
		return p, err
	}
	switch t.Kind {
	case events.TaskStorage:
		err = a.Jobs.GetJSON(ctx, out+IndexName, &p.idx)
	case events.TaskSecrets:
		err = a.Jobs.GetJSON(ctx, out+PartName, &p.secrets)
	default:
		p.rc, err = a.Jobs.Store.Get(ctx, out+PartName)
	}
	if err != nil {
		return p, fmt.Errorf("%s: %w", t.Unit, err)
	}
	return p, nil
}

// writePart writes one task's part of backup.json.
func writePart(jw *archive.JSONWriter, man *archive.Manifest, t events.Task, p preparedPart) error {
	var (
		vs  archive.ValueStats
		err error
	)
	switch t.Kind {
	case events.TaskStorage:
		for _, o := range p.idx.Objects {
			if err := jw.StorageObject(o); err != nil {
				return err
			}
			man.CountObject(o)
		}
		return nil
	case events.TaskSecrets:
		vs, err = jw.Secrets(p.secrets)
	case events.TaskControlD1:
		vs, err = jw.ControlD1(p.rc)
	case events.TaskAuthD1:
		vs, err = jw.AuthD1(p.rc)
	case events.TaskDO:
		vs, err = jw.Database(t.DOName, p.rc)
	case events.TaskConfig:
		vs, err = jw.Config(p.rc)
	case events.TaskData:
		vs, err = jw.DataNamespace(t.Namespace, p.rc)
	default:
		err = fmt.Errorf("unexpected task kind %q in a backup plan", t.Kind)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", t.Unit, err)
	}
	man.Count(vs)
	return nil
}

// putHashed stores what produce writes under key and returns its size and
// SHA-256.
func (a *Assembler) putHashed(ctx context.Context, key string, produce func(w io.Writer) error) (*hashingWriter, error) {
	var hw *hashingWriter
	err := a.Jobs.PutStream(ctx, key, func(w io.Writer) error {
		hw = newHashingWriter(w)
		return produce(hw)
	})
	return hw, err
}

func (a *Assembler) copyBlob(ctx context.Context, w io.Writer, key string) error {
	rc, err := a.Jobs.Store.Get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(w, rc)
	return err
}

// ReadManifest loads the manifest of an archive key.
func ReadManifest(ctx context.Context, store pipeline.BlobStore, archiveKey string) (archive.Manifest, error) {
	rc, err := store.Get(ctx, archive.ManifestName(archiveKey))
	if err != nil {
		return archive.Manifest{}, err
	}
	defer rc.Close()
	return archive.DecodeManifest(rc)
}
