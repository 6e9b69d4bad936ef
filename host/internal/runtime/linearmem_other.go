//go:build !linux

package runtime

import "github.com/tetratelabs/wazero/experimental"

// linearMemory is nil elsewhere: wazero allocates linear memory itself.
var linearMemory experimental.MemoryAllocator
