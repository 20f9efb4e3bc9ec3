package image

import (
	"bytes"
	"debug/elf"
	"fmt"
)

// elfInfo is what the package needs to know about an executable.
type elfInfo struct {
	interp bool // has a PT_INTERP program header (dynamically linked)
}

func parseELF(b []byte) (elfInfo, error) {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return elfInfo{}, fmt.Errorf("not an ELF file: %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return elfInfo{}, fmt.Errorf("ELF type %s is not an executable", f.Type)
	}
	var info elfInfo
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			info.interp = true
		}
	}
	return info, nil
}
