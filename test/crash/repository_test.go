package crash

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/edgevault/edgevault/events"
	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/backup"
	"github.com/edgevault/edgevault/pkg/repository"
)

// Repository backups: every write of a clean run failed, lost, or the
// process killed just before or after it; the run resumed or its messages
// redelivered. Each must end with one snapshot (a re-run of the assembler
// stores the same snapshot file, never a second one), a repository that
// checks clean with every pack re-read, and a snapshot whose export has
// the clean archive's content.
func TestCrashRepositoryBackupEmbedded(t *testing.T) {
	every(t, scenario{kind: events.KindBackup, wiring: embedded, repo: true})
}

func TestCrashRepositoryBackupServerless(t *testing.T) {
	every(t, scenario{kind: events.KindBackup, wiring: serverlessW, repo: true})
}

// always reports the steps every run of the matrix takes, whatever the
// stride: the repository's index and snapshot writes and the staged
// snapshot, where a repeated assembly could write a second snapshot.
func (s scenario) always(st step) bool {
	return s.repo && (strings.HasPrefix(st.class, "snapshots/") || strings.HasPrefix(st.class, "index/") || strings.HasSuffix(st.class, "/assembly/snapshot"))
}

// repoOptions make small chunks and packs, so the run writes several.
var repoOptions = repository.Options{ScryptN: 1024, ScryptR: 8, ScryptP: 1, MinChunk: 64 << 10, MaxChunk: 256 << 10, PackSize: 256 << 10}

// repoOpener opens the repository once per process (each runtime restart
// builds its dependencies again), nil outside repository scenarios.
func (r *rig) repoOpener() backup.RepositoryOpener {
	if !r.sc.repo {
		return nil
	}
	var (
		mu   sync.Mutex
		repo *repository.Repository
	)
	return func(ctx context.Context) (*repository.Repository, error) {
		mu.Lock()
		defer mu.Unlock()
		if repo != nil {
			return repo, nil
		}
		var err error
		repo, err = repository.OpenWith(ctx, r.store, repository.Credentials{Wrapper: testKey})
		return repo, err
	}
}

// checkSnapshot asserts the end of a repository backup.
func (r *rig) checkSnapshot(t *testing.T, job *events.Job, what string) {
	t.Helper()
	ctx := context.Background()
	if job.Snapshot == "" || job.Archive != "" {
		t.Fatalf("%s: the done job names snapshot %q, archive %q", what, job.Snapshot, job.Archive)
	}
	repo, err := repository.OpenWith(ctx, r.fsStore, repository.Credentials{Wrapper: testKey})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	rep, err := repo.Check(ctx, true, 0)
	if err != nil || len(rep.Errors) > 0 {
		t.Fatalf("%s: the repository does not check: %v %v", what, err, rep.Errors)
	}
	snaps, err := repo.ListSnapshots(ctx)
	if err != nil || len(snaps) != 1 || snaps[0].ID.String() != job.Snapshot {
		ids := make([]string, len(snaps))
		for i, s := range snaps {
			ids[i] = s.ID.String()
		}
		t.Fatalf("%s: snapshots %v (%v); want exactly the job's %s", what, ids, err, job.Snapshot)
	}
	path := filepath.Join(r.dir, "export.tar.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	err = repo.Export(ctx, snaps[0].Snapshot, f, archive.TarGz)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("%s: export: %v", what, err)
	}
	got, err := contentOf(path)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != r.w.content {
		t.Fatalf("%s: the snapshot's content differs from the clean archive's", what)
	}
}

// testKey stands in for the KMS key that wraps the repository key.
var testKey = newAESKey()

type aesKey struct{ aead cipher.AEAD }

func newAESKey() *aesKey {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return &aesKey{aead: aead}
}

func (k *aesKey) Wrap(_ context.Context, repo repository.ID, key []byte) ([]byte, string, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, "", err
	}
	return k.aead.Seal(nonce, nonce, key, repo[:]), "test-key", nil
}

func (k *aesKey) Unwrap(_ context.Context, repo repository.ID, wrapped []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(wrapped) < n {
		return nil, repository.ErrWrongKey
	}
	plain, err := k.aead.Open(nil, wrapped[:n], wrapped[n:], repo[:])
	if err != nil {
		return nil, repository.ErrWrongKey
	}
	return plain, nil
}
