//! Pages of memory-mapped model files.

/// Let the kernel drop `range` of a mapping from our resident set, once its bytes have been
/// copied out (a read into a buffer, a repack into tiles).
pub(crate) fn release(map: &memmap2::Mmap, range: std::ops::Range<usize>) {
    #[cfg(unix)]
    // SAFETY: a read-only shared file mapping; dropped pages are re-read from the file if
    // touched again, so no data can change.
    unsafe {
        let _ = map.unchecked_advise_range(
            memmap2::UncheckedAdvice::DontNeed,
            range.start,
            range.len(),
        );
    }
    #[cfg(not(unix))]
    let _ = (map, range);
}
