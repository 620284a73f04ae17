# Cython view of src/scratch.h: per-thread grow-only scratch buffers (NULL on failure).
cdef extern from "scratch.h" nogil:
    void *fc_scratch(int slot, size_t nbytes) noexcept
