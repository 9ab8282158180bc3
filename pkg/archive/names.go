package archive

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Version is the only backup format version this package reads and writes.
const Version = "1.1"

// Values of the top-level "source" field (spec 3.6).
const (
	SourceCloudflareEdge = "cloudflare-edge"
	SourceLocal          = "local"
	SourceDocker         = "docker"
)

// Format is the container of a backup file.
type Format int

// Formats. The zero Format is invalid.
const (
	JSON Format = iota + 1
	TarGz
)

func (f Format) String() string {
	switch f {
	case JSON:
		return "json"
	case TarGz:
		return "tar.gz"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// MarshalText writes "json" or "tar.gz" ("" for the zero Format).
func (f Format) MarshalText() ([]byte, error) {
	switch f {
	case 0:
		return []byte{}, nil
	case JSON, TarGz:
		return []byte(f.String()), nil
	}
	return nil, fmt.Errorf("archive: invalid format %d", int(f))
}

// UnmarshalText accepts "json" and "tar.gz".
func (f *Format) UnmarshalText(b []byte) error {
	switch string(b) {
	case "json":
		*f = JSON
	case "tar.gz":
		*f = TarGz
	default:
		return fmt.Errorf("archive: unknown format %q", b)
	}
	return nil
}

// DetectFormat decides the format from a file name the way the official
// restore does (spec 3.7): a case-sensitive ".tar.gz" or ".tgz" suffix is an
// archive, anything else is JSON.
func DetectFormat(name string) Format {
	if strings.HasSuffix(name, ".tar.gz") || strings.HasSuffix(name, ".tgz") {
		return TarGz
	}
	return JSON
}

const fileTimeLayout = "2006-01-02T15-04-05"

// FileName is the official CLI's output name for a backup started at start:
// edgebase-backup-YYYY-MM-DDTHH-MM-SS.json (or .tar.gz), in UTC, without
// milliseconds and without a trailing Z.
func FileName(start time.Time, tarball bool) string {
	ext := ".json"
	if tarball {
		ext = ".tar.gz"
	}
	return "edgebase-backup-" + start.UTC().Format(fileTimeLayout) + ext
}

var archiveNameRE = regexp.MustCompile(`^edgebase-backup-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.(json|tar\.gz|tgz)$`)

// IsArchiveName reports whether the base name of name is a backup file name
// (FileName's pattern; ".tgz" is accepted too).
func IsArchiveName(name string) bool {
	return archiveNameRE.MatchString(filepath.Base(name))
}

// ManifestName is the name of the manifest written beside an archive.
func ManifestName(archive string) string { return archive + ".manifest.json" }

const isoLayout = "2006-01-02T15:04:05.000Z"

// FormatTimestamp formats t like JavaScript's toISOString
// (2026-03-07T10:00:05.123Z), the spelling of the top-level "timestamp".
func FormatTimestamp(t time.Time) string { return t.UTC().Format(isoLayout) }

// CreateFile creates path for writing with mode 0600 from the start, failing
// if it exists: a backup may hold secrets and must never be readable by
// others, not even for the moment before a chmod.
func CreateFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("archive: create %s: %w", path, err)
	}
	return f, nil
}
