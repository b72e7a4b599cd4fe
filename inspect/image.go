package inspect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"
)

// CRIU image magics (criu/include/magic.h). Every image but inventory
// starts with IMG_COMMON (or IMG_SERVICE) followed by its own magic.
const (
	magicCommon    = 0x54564319
	magicService   = 0x55105940
	magicInventory = 0x58313116
	magicPstree    = 0x50273030
	magicCore      = 0x55053847
	magicIDs       = 0x54432030
	magicMM        = 0x57492820
	magicPagemap   = 0x56084025
	magicFdinfo    = 0x56213732
	magicFiles     = 0x56303138
	magicRemapPath = 0x59133954
	magicGhostFile = 0x52583605
	magicMnts      = 0x55563928
)

// maxEntry bounds one protobuf entry; CRIU's largest (core, mm with many
// VMAs) stay far below it. A bigger size field means a corrupt file.
const maxEntry = 64 << 20

// ImageError is an image file that cannot be read as what it should be.
type ImageError struct {
	File   string
	Reason string
	Err    error
}

func (e *ImageError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.File, e.Reason, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Reason)
}
func (e *ImageError) Unwrap() error { return e.Err }
func (e *ImageError) Hint() string {
	return "the image directory is damaged or not from CRIU; take a new checkpoint"
}

// entries splits an image into its raw protobuf entries after checking
// its magic. Images with data between entries (ghost files) have their
// own reader.
func entries(name string, b []byte, magic uint32) ([][]byte, error) {
	rest, err := checkMagic(name, b, magic)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(rest) > 0 {
		e, r, err := next(name, rest, len(b)-len(rest))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		rest = r
	}
	return out, nil
}

func checkMagic(name string, b []byte, magic uint32) ([]byte, error) {
	if len(b) < 4 {
		return nil, &ImageError{File: name, Reason: fmt.Sprintf("truncated: %d bytes, no magic", len(b))}
	}
	m := binary.LittleEndian.Uint32(b)
	rest := b[4:]
	// inventory.img has its magic alone, every other image follows
	// IMG_COMMON (or IMG_SERVICE) with its own.
	if magic != magicInventory {
		if m != magicCommon && m != magicService {
			return nil, &ImageError{File: name, Reason: fmt.Sprintf("not a CRIU image (magic %#x)", m)}
		}
		if len(rest) < 4 {
			return nil, &ImageError{File: name, Reason: "truncated after the common magic"}
		}
		m = binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
	}
	if m != magic {
		return nil, &ImageError{File: name, Reason: fmt.Sprintf("not the expected CRIU image (magic %#x, want %#x)", m, magic)}
	}
	return rest, nil
}

// next cuts one size-prefixed entry off b; off is b's offset in the file.
func next(name string, b []byte, off int) (entry, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, &ImageError{File: name, Reason: fmt.Sprintf("truncated entry header at offset %d", off)}
	}
	n := binary.LittleEndian.Uint32(b)
	if n > maxEntry {
		return nil, nil, &ImageError{File: name, Reason: fmt.Sprintf("entry at offset %d claims %d bytes", off, n)}
	}
	if int(n) > len(b)-4 {
		return nil, nil, &ImageError{File: name, Reason: fmt.Sprintf("truncated entry at offset %d (%d of %d bytes)", off, len(b)-4, n)}
	}
	return b[4 : 4+n], b[4+n:], nil
}

func unmarshal(name string, b []byte, m proto.Message) error {
	if err := proto.Unmarshal(b, m); err != nil {
		return &ImageError{File: name, Reason: "undecodable entry", Err: err}
	}
	return nil
}

// decodeAll decodes every entry of an image as T.
func decodeAll[T any, P interface {
	*T
	proto.Message
}](name string, b []byte, magic uint32) ([]P, error) {
	raw, err := entries(name, b, magic)
	if err != nil {
		return nil, err
	}
	out := make([]P, 0, len(raw))
	for _, r := range raw {
		m := P(new(T))
		if err := unmarshal(name, r, m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// decodeOne decodes an image holding exactly one entry.
func decodeOne[T any, P interface {
	*T
	proto.Message
}](name string, b []byte, magic uint32) (P, error) {
	all, err := decodeAll[T, P](name, b, magic)
	if err != nil {
		return nil, err
	}
	if len(all) != 1 {
		return nil, &ImageError{File: name, Reason: fmt.Sprintf("%d entries, want 1", len(all))}
	}
	return all[0], nil
}

// dirImages reads image files from one directory.
type dirImages struct{ dir string }

// read returns the named file's bytes; ok is false if it does not exist.
func (d dirImages) read(name string) (b []byte, ok bool, err error) {
	b, err = os.ReadFile(filepath.Join(d.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, &ImageError{File: name, Reason: "unreadable", Err: err}
	}
	return b, true, nil
}

func (d dirImages) need(name string) ([]byte, error) {
	b, ok, err := d.read(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &ImageError{File: name, Reason: "missing from " + d.dir}
	}
	return b, nil
}
