package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/edgevault/edgevault/pkg/archive"
	"github.com/edgevault/edgevault/pkg/provenance"
)

type verifyOpts struct {
	trust    []string
	deep     bool
	aws      awsFlags
	subset   string
	repo     repoFlags
	readData bool
}

func (a *app) verifyCommand() *cobra.Command {
	var o verifyOpts
	cmd := &cobra.Command{
		Use:   "verify FILE|DIR|s3://bucket/prefix/ARCHIVE... | --repo REPO [--read-data | --read-data-subset N%]",
		Short: "Check archives end to end (ours or the official CLI's), their signatures and their chain",
		Long: `Check each archive end to end against its manifest. With --trust, every
manifest must carry a valid signature by one of the trusted public keys
(unsigned archives are refused). Given several archives or a directory,
the manifests of each source must also form an unbroken hash chain:
an archive removed from the middle, or archives out of order, are named.
--deep also re-hashes every object against its recorded size and etag
(MD5 where the etag is a single-part MD5) and checks that the tar members
and the JSON's storage.objects agree entry by entry.

With --repo (and no archive), check a repository instead: its structure,
and with --read-data every pack re-read and every chunk re-hashed; when
that passes, each snapshot checked is recorded as verified (forget always
keeps a source's newest verified snapshot). --read-data-subset N% reads
only N% of the packs and records nothing.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0 && o.repo.where(a) != "":
				return a.runRepoVerify(cmd.Context(), o)
			case len(args) == 0:
				return failure("invalid_arguments", errors.New("backup verify needs archives to check, or --repo"))
			case o.repo.location != "" || o.readData:
				return failure("invalid_arguments", errors.New("--repo and --read-data check a repository: pass them without archives"))
			}
			return a.runVerify(cmd.Context(), args, o)
		},
	}
	cmd.Flags().StringArrayVar(&o.trust, "trust", nil, "public key file (PEM) whose signatures are trusted; repeatable; unsigned archives are then refused")
	cmd.Flags().BoolVar(&o.deep, "deep", false, "also check every object's size and etag and that the tar and the JSON agree entry by entry")
	cmd.Flags().StringVar(&o.subset, "read-data-subset", "", "for s3:// archives: read back only N% of the archive's manifest parts (at least one), chosen at random, and check each one's SHA-256; the manifest's signature and chain are checked as always. With --repo: re-read N% of the packs")
	cmd.Flags().BoolVar(&o.readData, "read-data", false, "with --repo: re-read every pack and re-hash every chunk, and record the snapshots as verified")
	o.repo.register(cmd, "repository to check instead of archives")
	o.aws.register(cmd)
	return cmd
}

// verified is the outcome for one archive.
type verified struct {
	File      string              `json:"file"`
	Summary   archive.Summary     `json:"summary"`
	Signature string              `json:"signature"` // "ok", "unchecked", "unsigned", "no manifest"
	KeyID     string              `json:"keyId,omitempty"`
	Deep      *archive.DeepReport `json:"deep,omitempty"`
	manifest  *archive.Manifest
}

func (a *app) runVerify(ctx context.Context, args []string, o verifyOpts) error {
	var trusted []provenance.PublicKey
	for _, p := range o.trust {
		k, err := provenance.ReadPublicKeyFile(p)
		if err != nil {
			return failure("invalid_arguments", err)
		}
		trusted = append(trusted, k)
	}
	files, err := archiveFiles(args)
	if err != nil {
		return failure("backup_verify_failed", err)
	}
	var results []verified
	for _, f := range files {
		v, err := a.verifyOne(ctx, f, o, trusted)
		results = append(results, v)
		if err != nil {
			e := failure("backup_verify_failed", err)
			e.extra = map[string]any{"summary": v.Summary, "file": f}
			return e
		}
	}
	var chain *provenance.ChainReport
	if len(files) > 1 {
		var ms []archive.Manifest
		for _, v := range results {
			if v.manifest != nil {
				ms = append(ms, *v.manifest)
			}
		}
		r := provenance.CheckChain(ms)
		chain = &r
		if err := r.Err(); err != nil {
			e := failure("backup_verify_failed", err)
			e.extra = map[string]any{"chain": r}
			return e
		}
	}
	if a.jsonOut {
		if len(results) == 1 && chain == nil {
			doc := map[string]any{"status": "success", "summary": results[0].Summary, "signature": results[0].Signature}
			if results[0].Deep != nil {
				doc["deep"] = results[0].Deep
			}
			a.printJSON(doc)
			return nil
		}
		a.printJSON(map[string]any{"status": "success", "archives": results, "chain": chain})
		return nil
	}
	for i, v := range results {
		if len(results) > 1 {
			if i > 0 {
				a.say("\n")
			}
			a.say("== %s\n", v.File)
		}
		if err := v.Summary.WriteText(a.env.Stdout); err != nil {
			return err
		}
		if v.Deep != nil {
			a.say("Deep check: %d objects re-hashed (%d etags checked as MD5), %d tar members matched\n", v.Deep.Objects, v.Deep.MD5Checked, v.Deep.Members)
		}
		switch v.Signature {
		case "ok":
			a.say("Signature: ok (key %s)\n", shortID(v.KeyID))
		case "unchecked":
			a.say("Signature: present, not checked (key %s; pass --trust to check it)\n", shortID(v.KeyID))
		default:
			a.say("Signature: %s\n", v.Signature)
		}
	}
	if chain != nil {
		a.say("Chain: %d archives, unbroken\n", len(results))
		for _, n := range chain.Notes {
			a.say("  note: %s\n", n)
		}
	}
	return nil
}

func (a *app) verifyOne(ctx context.Context, file string, o verifyOpts, trusted []provenance.PublicKey) (verified, error) {
	v := verified{File: file}
	if isS3(file) {
		// Streamed from the bucket in one pass, checked against its
		// manifest (which S3 archives always have).
		if o.deep {
			return v, fmt.Errorf("--deep reads a local archive; %s is in S3", file)
		}
		if o.subset != "" {
			pct, err := parsePercent(o.subset)
			if err != nil {
				return v, err
			}
			s, m, err := a.verifyS3Subset(ctx, o.aws, file, pct)
			v.Summary = s
			if err != nil {
				return v, err
			}
			return v, checkSignature(&v, *m, trusted)
		}
		s, m, err := a.verifyS3(ctx, o.aws, file)
		v.Summary = s
		if err != nil {
			return v, err
		}
		if m == nil {
			return v, noManifest(&v, file, trusted)
		}
		return v, checkSignature(&v, *m, trusted)
	}
	s, err := archive.Verify(ctx, file)
	v.Summary = s
	if err != nil {
		return v, err
	}
	if o.deep {
		d, err := archive.VerifyDeep(ctx, file)
		v.Deep = &d
		if err != nil {
			return v, err
		}
	}
	m, err := archive.ReadManifestFile(archive.ManifestName(file))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return v, noManifest(&v, file, trusted)
	case err != nil:
		return v, err
	}
	return v, checkSignature(&v, m, trusted)
}

// noManifest records an archive without a manifest: refused when
// signatures are required.
func noManifest(v *verified, file string, trusted []provenance.PublicKey) error {
	v.Signature = "no manifest"
	if len(trusted) > 0 {
		return fmt.Errorf("%w: %s has no manifest, so nothing is signed", provenance.ErrUnsigned, filepath.Base(file))
	}
	return nil
}

// checkSignature records m and its signature in v and, with trusted keys,
// checks it.
func checkSignature(v *verified, m archive.Manifest, trusted []provenance.PublicKey) error {
	v.manifest = &m
	if m.Signature == nil {
		v.Signature = "unsigned"
	} else {
		v.Signature, v.KeyID = "unchecked", m.Signature.KeyID
	}
	if len(trusted) > 0 {
		if err := provenance.Verify(m, trusted...); err != nil {
			return err
		}
		v.Signature = "ok"
	}
	return nil
}

// archiveFiles expands directories into the archives they hold (by
// name, oldest first).
func archiveFiles(args []string) ([]string, error) {
	var files []string
	for _, p := range args {
		if isS3(p) {
			files = append(files, p)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		var in []string
		for _, en := range entries {
			if !en.IsDir() && archive.IsArchiveName(en.Name()) {
				in = append(in, filepath.Join(p, en.Name()))
			}
		}
		if len(in) == 0 {
			return nil, fmt.Errorf("no archives in %s", p)
		}
		sort.Strings(in)
		files = append(files, in...)
	}
	return files, nil
}

func shortID(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

func (a *app) keygenCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create an Ed25519 key pair for signing manifests (backup create --sign-key, backup verify --trust)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pub := strings.TrimSuffix(out, ".key") + ".pub"
			if pub == out {
				pub = out + ".pub"
			}
			s, err := provenance.GenerateKey(out, pub)
			if err != nil {
				return failure("keygen_failed", err)
			}
			if a.jsonOut {
				a.printJSON(map[string]any{"status": "success", "key": out, "publicKey": pub, "keyId": s.KeyID()})
				return nil
			}
			a.say("Private key: %s (mode 0600; keep it with the backup job, never with the archives)\n", out)
			a.say("Public key:  %s (give it to whoever verifies: backup verify --trust %s)\n", pub, pub)
			a.say("Key id:      %s\n", s.KeyID())
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "edgevault-signing.key", "private key file to create (the public key goes beside it as .pub)")
	return cmd
}
