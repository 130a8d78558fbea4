//! Byte classes of a whole buffer, found in one pass: the maximal runs of
//! each alphabet the run finders start from — base64, hex with its
//! delimiters and hex digits alone for the decoded views, and the four
//! shapes of the `crypto` detector — each at
//! least its minimum length.
//!
//! Each 64-byte block is classified into one bit mask per class at once
//! (on x86-64 processors with AVX-512BW and VBMI, found at run time, one
//! 128-entry table lookup for all 64 bytes and one test per class; with
//! AVX2, the same table as eight 16-entry `vpshufb` lookups per 32 bytes;
//! on other x86-64 processors SSE2, which every one has: sixteen bytes per
//! comparison and one `movemask` per sixteen flags; elsewhere a loop the
//! compiler vectorises), and runs are read off the masks a run at a time,
//! not a byte at a time. One pass serves every class: classifying a block
//! for all seven classes costs little more than for one, while a pass per
//! class paid the loads and the packing again.
//!
//! Pure; the only `unsafe` in the crate is the calls into the SIMD block
//! classifiers: the SSE2 one is sound because SSE2 is part of the x86-64
//! baseline (the call is compiled only when the target has it), the AVX2
//! and AVX-512 ones because each is called only when the CPU reports its
//! features. Property tests hold each this CPU can run to the
//! byte-at-a-time definition.

use std::ops::Range;

/// A class the one pass finds runs of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Both base64 alphabets: letters, digits, `+`, `/`, `-`, `_`.
    Base64 = 0,
    /// Hex digits and what may sit between hex bytes: `-`, `:`, space,
    /// comma, and the `x` and `\` of `\x` / `0x`.
    Hex = 1,
    /// What a seed phrase is made of: lowercase letters and the separators
    /// between its words (whitespace, digits, `,.)-"'`).
    Phrase = 2,
    /// A card number's: digits, space, dash.
    Card = 3,
    /// An IBAN's: capitals, digits, space.
    Iban = 4,
    /// Base58 (a WIF key's): letters and digits but `0`, `O`, `I`, `l`.
    Wif = 5,
    /// Hex digits alone: a value written without delimiters.
    HexDigits = 6,
}

const CLASSES: usize = 7;

/// Every class, in the order of their numbers.
const ALL: [Class; CLASSES] =
    [Class::Base64, Class::Hex, Class::Phrase, Class::Card, Class::Iban, Class::Wif, Class::HexDigits];

/// Whether `b` is in `class`: the definition the block classifiers are
/// held to (a property test compares them over random blocks).
pub(crate) const fn contains(class: Class, b: u8) -> bool {
    match class {
        Class::Base64 => b.is_ascii_alphanumeric() | matches!(b, b'+' | b'/' | b'-' | b'_'),
        Class::Hex => b.is_ascii_hexdigit() | matches!(b, b'-' | b':' | b' ' | b',' | b'x' | b'X' | b'\\'),
        Class::Phrase => b.is_ascii_lowercase() | phrase_separator(b),
        Class::Card => b.is_ascii_digit() | (b == b' ') | (b == b'-'),
        Class::Iban => b.is_ascii_uppercase() | b.is_ascii_digit() | (b == b' '),
        Class::Wif => b.is_ascii_alphanumeric() & !matches!(b, b'0' | b'O' | b'I' | b'l'),
        Class::HexDigits => b.is_ascii_hexdigit(),
    }
}

/// The byte a seed phrase may hold between its words: whitespace,
/// `,.)-"'`, and digits (numbered lists).
pub(crate) const fn phrase_separator(b: u8) -> bool {
    b.is_ascii_whitespace() | b.is_ascii_digit() | matches!(b, b',' | b'.' | b')' | b'-' | b'"' | b'\'')
}

/// The maximal runs of each class, at least as long as asked.
#[derive(Debug, Default)]
pub(crate) struct ClassRuns {
    runs: [Vec<Range<usize>>; CLASSES],
}

impl ClassRuns {
    /// One pass over `data`: for each `(class, min)` of `wanted`, the
    /// maximal runs of that class at least `min` bytes long.
    pub(crate) fn of(data: &[u8], wanted: &[(Class, usize)]) -> ClassRuns {
        let mut readers: Vec<(Class, RunReader)> = wanted.iter().map(|&(c, min)| (c, RunReader::new(min))).collect();
        let groups = Groups::of(wanted.iter().map(|w| w.0));
        let whole = data.len() / 64 * 64;
        whole_blocks(&data[..whole], groups, &mut readers);
        if whole < data.len() {
            let masks = scalar_block_masks(&data[whole..]);
            for (class, reader) in &mut readers {
                reader.feed(whole, data.len() - whole, masks[*class as usize]);
            }
        }
        let mut out = ClassRuns::default();
        for (class, reader) in readers {
            out.runs[class as usize] = reader.finish(data.len());
        }
        out
    }

    /// The runs of `class` (empty when it was not asked for).
    pub(crate) fn get(&self, class: Class) -> &[Range<usize>] {
        &self.runs[class as usize]
    }
}

/// Runs of one class read off consecutive block masks.
struct RunReader {
    min: usize,
    /// The shift-and's shifts, each in `1..=32`; `shifts[..steps]` used.
    shifts: [u32; 6],
    steps: usize,
    /// `min` is more than a block: no run inside one is long enough.
    beyond_block: bool,
    /// How long the run reaching the previous block's end is so far (0:
    /// that block ended outside the class).
    carried: usize,
    out: Vec<Range<usize>>,
}

impl RunReader {
    fn new(min: usize) -> RunReader {
        // A run is at least one byte.
        let min = min.max(1);
        let shifts = run_shifts(min);
        RunReader {
            min,
            shifts,
            steps: shifts.iter().take_while(|&&s| s != 0).count(),
            beyond_block: min > 64,
            carried: 0,
            out: Vec::new(),
        }
    }

    /// The block of `n` bytes at `base` (`n` < 64 only for the last), with
    /// bit `j` of `mask` set when byte `base + j` is in the class (and no
    /// bit at or above `n`).
    ///
    /// Written without a branch on where runs fall (which in text is a
    /// coin toss per block) but for the rare ones: a block wholly in the
    /// class, and a run long enough to keep.
    fn feed(&mut self, base: usize, n: usize, mask: u64) {
        // The run at the block's start ends the carried one (of length 0
        // when there was none).
        let head = (mask.trailing_ones() as usize).min(n);
        if head == n {
            self.carried += n;
            return;
        }
        let closed = self.carried + head;
        if closed >= self.min {
            self.out.push(base + head - closed..base + head);
        }
        // Bit `head` is clear (head < n <= 64): the bits below it were
        // that run's.
        let rest = mask & (u64::MAX << head);
        // The run reaching the block's end is carried on, whatever its
        // length so far (shorter than `n - head`: bit `head` is clear);
        // the others end inside the block.
        let tail = (rest << (64 - n)).leading_ones() as usize;
        let inner = rest & (u64::MAX >> (64 - (n - tail)));
        // Only the runs at least `min` long: after the shift-and, a run of
        // set bits starts where each of them does. Short runs (most words
        // of text) cost nothing.
        let long = if self.beyond_block { 0 } else { holds(inner, &self.shifts[..self.steps]) };
        let mut starts = long & !(long << 1);
        while starts != 0 {
            let i = starts.trailing_zeros() as usize;
            let len = (inner >> i).trailing_ones() as usize;
            self.out.push(base + i..base + i + len);
            starts &= starts - 1;
        }
        self.carried = tail;
    }

    /// Whole blocks from `base` on, one mask each.
    fn feed_blocks(&mut self, base: usize, masks: &[u64]) {
        for (k, &mask) in masks.iter().enumerate() {
            self.feed(base + 64 * k, 64, mask);
        }
    }

    fn finish(mut self, len: usize) -> Vec<Range<usize>> {
        if self.carried >= self.min {
            self.out.push(len - self.carried..len);
        }
        self.out
    }
}

/// The shifts that find `min` set bits in a row (shift-and doubling: after
/// shifting by each in turn and and-ing, bit `i` is set when bits
/// `i..i + min` all were): at most six, each at most 32, for `min` up to
/// 64; the rest 0. A `min` above 64 gets none: no run inside one block is
/// that long (the reader knows).
fn run_shifts(min: usize) -> [u32; 6] {
    let mut shifts = [0u32; 6];
    if min > 64 {
        return shifts;
    }
    let mut k = 1;
    for slot in &mut shifts {
        if k >= min {
            break;
        }
        let s = (min - k).min(k);
        *slot = s as u32;
        k += s;
    }
    shifts
}

/// `mask` after the shift-and: bit `i` set when bits `i..i + min` all
/// were, for the `min` `shifts` (each below 64) were made for.
fn holds(mask: u64, shifts: &[u32]) -> u64 {
    shifts.iter().fold(mask, |r, &s| r & (r >> (s & 63)))
}

/// Bit `j` set when `inside(block[j])`, for a block of at most 64 bytes.
/// Classified into a flag per byte first (a loop the compiler vectorises),
/// then packed eight flags at a time by one multiplication.
fn scalar_mask(block: &[u8], inside: &impl Fn(u8) -> bool) -> u64 {
    let mut flags = [0u8; 64];
    for (f, &b) in flags.iter_mut().zip(block) {
        *f = u8::from(inside(b));
    }
    let mut mask = 0u64;
    for (k, eight) in flags.chunks_exact(8).enumerate() {
        let x = u64::from_le_bytes([eight[0], eight[1], eight[2], eight[3], eight[4], eight[5], eight[6], eight[7]]);
        // Byte i (0 or 1) lands on bit 56 + i; nothing carries.
        mask |= (x.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k);
    }
    mask
}

/// Which classes a pass needs: the views' (base64, hex), `crypto`'s
/// (the rest), or both. A pass classifies only what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Groups {
    views: bool,
    crypto: bool,
}

impl Groups {
    fn of(classes: impl Iterator<Item = Class>) -> Groups {
        let mut g = Groups { views: false, crypto: false };
        for c in classes {
            match c {
                Class::Base64 | Class::Hex | Class::HexDigits => g.views = true,
                _ => g.crypto = true,
            }
        }
        g
    }
}

/// Bit `class` of entry `b` set when `contains(class, b)`, for each ASCII
/// byte `b` (no byte above holds a class): what the table-lookup
/// classifiers look up.
#[cfg(target_arch = "x86_64")]
const CLASS_BITS: [u8; 128] = {
    let mut t = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        let mut c = 0;
        while c < CLASSES {
            if contains(ALL[c], b as u8) {
                t[b] |= 1 << (ALL[c] as u8);
            }
            c += 1;
        }
        b += 1;
    }
    t
};

/// How many blocks are classified before their masks are read: the
/// masks of a chunk (a few KiB) stay in L1, and each class's reader then
/// runs over them in a loop of its own, its state in registers.
const CHUNK_BLOCKS: usize = 64;

/// Masks of a chunk's blocks, by class then block.
type ChunkMasks = [[u64; CHUNK_BLOCKS]; CLASSES];

/// Feed `readers` the masks of each 64-byte block of `data` (a whole
/// number of blocks), computing only the classes of `groups`.
fn whole_blocks(data: &[u8], groups: Groups, readers: &mut [(Class, RunReader)]) {
    let classify = Classifier::for_this_cpu();
    let mut masks: ChunkMasks = [[0; CHUNK_BLOCKS]; CLASSES];
    for (c, chunk) in data.chunks(64 * CHUNK_BLOCKS).enumerate() {
        let blocks = chunk.len() / 64;
        classify.chunk(chunk, groups, &mut masks);
        for (class, reader) in readers.iter_mut() {
            reader.feed_blocks(c * 64 * CHUNK_BLOCKS, &masks[*class as usize][..blocks]);
        }
    }
}

/// The fastest block classifier this CPU can run.
#[derive(Debug, Clone, Copy)]
enum Classifier {
    #[cfg(target_arch = "x86_64")]
    Vbmi,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// SSE2 where the target has it, else a byte at a time.
    Baseline,
}

impl Classifier {
    fn for_this_cpu() -> Classifier {
        #[cfg(target_arch = "x86_64")]
        if vbmi::available() {
            return Classifier::Vbmi;
        }
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            return Classifier::Avx2;
        }
        Classifier::Baseline
    }

    /// The masks of each 64-byte block of `chunk` (at most
    /// [`CHUNK_BLOCKS`] of them; a short block at the end is left), for
    /// the classes of `groups` at least.
    fn chunk(self, chunk: &[u8], groups: Groups, masks: &mut ChunkMasks) {
        match self {
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            // SAFETY: `vbmi::classify` needs AVX-512BW and AVX-512VBMI,
            // which `for_this_cpu` found this CPU to have.
            Classifier::Vbmi => unsafe { vbmi::classify(chunk, masks) },
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            // SAFETY: `avx2::classify` needs AVX2, which `for_this_cpu`
            // found this CPU to have.
            Classifier::Avx2 => unsafe { avx2::classify(chunk, masks) },
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            #[allow(unsafe_code)]
            // SAFETY: `sse2::classify` needs only SSE2, which this build's
            // target has (the cfg above).
            Classifier::Baseline => unsafe { sse2::classify(chunk, groups, masks) },
            // Without SSE2 every class is classified, whatever `groups` says.
            #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
            Classifier::Baseline => {
                let _ = groups;
                for (k, block) in chunk.chunks_exact(64).enumerate() {
                    store(masks, k, scalar_block_masks(block));
                }
            }
        }
    }
}

/// The first `N` little-endian 64-bit words of `bytes`: what a vector is
/// loaded from, without a pointer.
#[cfg(target_arch = "x86_64")]
fn words<const N: usize>(bytes: &[u8]) -> [i64; N] {
    std::array::from_fn(|k| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[8 * k..8 * k + 8]);
        i64::from_le_bytes(w)
    })
}

/// One block's masks into a chunk's.
fn store(masks: &mut ChunkMasks, block: usize, of_block: [u64; CLASSES]) {
    for (class, m) in of_block.into_iter().enumerate() {
        masks[class][block] = m;
    }
}

/// Every class's mask of a block of at most 64 bytes, a byte at a time:
/// for a last short block, for targets without SSE2, and as the reference
/// the SIMD classifiers are tested against.
fn scalar_block_masks(block: &[u8]) -> [u64; CLASSES] {
    ALL.map(|class| scalar_mask(block, &|b| contains(class, b)))
}

#[cfg(target_arch = "x86_64")]
mod vbmi {
    //! [`super::contains`] for 64 bytes per instruction, on processors with
    //! AVX-512BW and AVX-512VBMI (found at run time): one table lookup
    //! gives each byte its class bits, one test per class gives its mask.

    use std::arch::x86_64::{
        __m512i, _mm512_movepi8_mask, _mm512_permutex2var_epi8, _mm512_set_epi64, _mm512_set1_epi8,
        _mm512_test_epi8_mask,
    };

    use super::{CLASS_BITS as TABLE, CLASSES, ChunkMasks, store, words};

    /// Whether this CPU can run [`classify`].
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512vbmi")
    }

    /// 64 bytes as a vector (eight little-endian words).
    #[target_feature(enable = "avx512f")]
    fn vector(bytes: &[u8]) -> __m512i {
        let [w0, w1, w2, w3, w4, w5, w6, w7] = words(bytes);
        _mm512_set_epi64(w7, w6, w5, w4, w3, w2, w1, w0)
    }

    /// The masks of each 64-byte block of `chunk`.
    #[target_feature(enable = "avx512bw,avx512vbmi")]
    pub(super) fn classify(chunk: &[u8], masks: &mut ChunkMasks) {
        let (low, high) = (vector(&TABLE[..64]), vector(&TABLE[64..]));
        for (k, block) in chunk.chunks_exact(64).enumerate() {
            store(masks, k, block_masks(block, low, high));
        }
    }

    /// Every class's mask of a 64-byte block, given the table's halves.
    #[target_feature(enable = "avx512bw,avx512vbmi")]
    pub(super) fn block_masks(block: &[u8], low: __m512i, high: __m512i) -> [u64; CLASSES] {
        let v = vector(block);
        // Indexed by each byte's low seven bits; bytes above 0x7f, whose
        // top bit is set, are in no class.
        let bits = _mm512_permutex2var_epi8(low, v, high);
        let ascii = !_mm512_movepi8_mask(v);
        std::array::from_fn(|class| _mm512_test_epi8_mask(bits, _mm512_set1_epi8(1 << class)) & ascii)
    }

    /// [`block_masks`] with the table loaded: for the tests.
    #[cfg(test)]
    #[target_feature(enable = "avx512bw,avx512vbmi")]
    pub(super) fn masks_of(block: &[u8]) -> [u64; CLASSES] {
        block_masks(block, vector(&TABLE[..64]), vector(&TABLE[64..]))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! [`super::contains`] for 32 bytes per instruction, on processors with
    //! AVX2 (found at run time): the 128-entry table looked up as eight
    //! 16-entry ones, one per high nibble (`vpshufb` by the low nibble,
    //! kept where the high nibble is that table's), then one test per
    //! class.

    use std::arch::x86_64::{
        __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_movemask_epi8, _mm256_or_si256, _mm256_set_epi64x,
        _mm256_set1_epi8, _mm256_setzero_si256, _mm256_shuffle_epi8, _mm256_srli_epi16,
    };

    use super::{CLASS_BITS, CLASSES, ChunkMasks, store, words};

    /// Whether this CPU can run [`classify`].
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }

    /// 32 bytes as a vector (four little-endian words).
    #[target_feature(enable = "avx2")]
    fn vector(bytes: &[u8]) -> __m256i {
        let [w0, w1, w2, w3] = words(bytes);
        _mm256_set_epi64x(w3, w2, w1, w0)
    }

    /// The eight 16-entry tables, each in both 128-bit lanes (`vpshufb`
    /// looks up within a lane).
    #[target_feature(enable = "avx2")]
    fn tables() -> [__m256i; 8] {
        std::array::from_fn(|hi| {
            let row = &CLASS_BITS[16 * hi..16 * hi + 16];
            let mut both = [0u8; 32];
            both[..16].copy_from_slice(row);
            both[16..].copy_from_slice(row);
            vector(&both)
        })
    }

    /// The masks of each 64-byte block of `chunk`.
    #[target_feature(enable = "avx2")]
    pub(super) fn classify(chunk: &[u8], masks: &mut ChunkMasks) {
        let tables = tables();
        for (k, block) in chunk.chunks_exact(64).enumerate() {
            store(masks, k, block_masks(block, &tables));
        }
    }

    /// Every class's mask of a 64-byte block, given the tables.
    #[target_feature(enable = "avx2")]
    pub(super) fn block_masks(block: &[u8], tables: &[__m256i; 8]) -> [u64; CLASSES] {
        let bits = |v: __m256i| {
            let low = _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
            let high = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0f));
            // Bytes above 0x7f have a high nibble no table is for.
            let mut acc = _mm256_setzero_si256();
            for (hi, table) in tables.iter().enumerate() {
                let here = _mm256_cmpeq_epi8(high, _mm256_set1_epi8(hi as i8));
                acc = _mm256_or_si256(acc, _mm256_and_si256(here, _mm256_shuffle_epi8(*table, low)));
            }
            acc
        };
        let (first, second) = (bits(vector(&block[..32])), bits(vector(&block[32..])));
        let mask = |v: __m256i, class: usize| {
            let bit = _mm256_set1_epi8(1 << class);
            _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit)) as u32
        };
        std::array::from_fn(|class| u64::from(mask(first, class)) | (u64::from(mask(second, class)) << 32))
    }

    /// [`block_masks`] with the tables loaded: for the tests.
    #[cfg(test)]
    #[target_feature(enable = "avx2")]
    pub(super) fn masks_of(block: &[u8]) -> [u64; CLASSES] {
        block_masks(block, &tables())
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    //! [`super::contains`] for sixteen bytes per instruction.

    use std::arch::x86_64::{
        __m128i, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
        _mm_set1_epi8, _mm_sub_epi8,
    };

    use super::{CLASSES, ChunkMasks, Class, Groups, store, words};

    #[target_feature(enable = "sse2")]
    fn splat(b: u8) -> __m128i {
        _mm_set1_epi8(b as i8)
    }

    /// 0xff where the byte equals `b`.
    #[target_feature(enable = "sse2")]
    fn eq(v: __m128i, b: u8) -> __m128i {
        _mm_cmpeq_epi8(v, splat(b))
    }

    /// 0xff where the byte is in `lo..lo + n` (unsigned: `b - lo <= n - 1`).
    #[target_feature(enable = "sse2")]
    fn within(v: __m128i, lo: u8, n: u8) -> __m128i {
        let t = _mm_sub_epi8(v, splat(lo));
        _mm_cmpeq_epi8(_mm_min_epu8(t, splat(n - 1)), t)
    }

    #[target_feature(enable = "sse2")]
    fn or(a: __m128i, b: __m128i) -> __m128i {
        _mm_or_si128(a, b)
    }

    /// The masks of each 64-byte block of `chunk`, for the classes of
    /// `groups`.
    #[target_feature(enable = "sse2")]
    pub(super) fn classify(chunk: &[u8], groups: Groups, masks: &mut ChunkMasks) {
        for (k, block) in chunk.chunks_exact(64).enumerate() {
            store(masks, k, block_masks(block, groups));
        }
    }

    #[target_feature(enable = "sse2")]
    pub(super) fn block_masks(block: &[u8], groups: Groups) -> [u64; CLASSES] {
        let mut out = [0u64; CLASSES];
        for (k, sixteen) in block.chunks_exact(16).enumerate() {
            let [low, high] = words(sixteen);
            let v = _mm_set_epi64x(high, low);
            let digit = within(v, b'0', 10);
            let lower = within(v, b'a', 26);
            let upper = within(v, b'A', 26);
            let alnum = or(digit, or(lower, upper));
            let dash = eq(v, b'-');
            let space = eq(v, b' ');
            let comma = eq(v, b',');
            let mut set = |class: Class, m: __m128i| {
                out[class as usize] |= u64::from(_mm_movemask_epi8(m) as u16) << (16 * k);
            };
            if groups.views {
                let folded = _mm_or_si128(v, splat(0x20));
                let hex_letter = within(folded, b'a', 6);
                let base64 = or(or(alnum, dash), or(or(eq(v, b'+'), eq(v, b'/')), eq(v, b'_')));
                let hex = or(
                    or(or(digit, hex_letter), or(dash, eq(v, b':'))),
                    or(or(space, comma), or(eq(folded, b'x'), eq(v, b'\\'))),
                );
                set(Class::Base64, base64);
                set(Class::Hex, hex);
                set(Class::HexDigits, or(digit, hex_letter));
            }
            if groups.crypto {
                // is_ascii_whitespace: \t \n \x0c \r and space (not \x0b).
                let white = or(_mm_andnot_si128(eq(v, 0x0b), within(v, b'\t', 5)), space);
                let phrase = or(
                    or(or(lower, white), or(digit, comma)),
                    or(or(eq(v, b'.'), eq(v, b')')), or(dash, or(eq(v, b'"'), eq(v, b'\'')))),
                );
                let card = or(digit, or(space, dash));
                let iban = or(upper, or(digit, space));
                let not_base58 = or(or(eq(v, b'0'), eq(v, b'O')), or(eq(v, b'I'), eq(v, b'l')));
                let wif = _mm_andnot_si128(not_base58, alnum);
                set(Class::Phrase, phrase);
                set(Class::Card, card);
                set(Class::Iban, iban);
                set(Class::Wif, wif);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The runs a byte at a time: what [`ClassRuns`] must equal.
    fn naive(data: &[u8], min: usize, inside: impl Fn(u8) -> bool) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < data.len() {
            if !inside(data[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < data.len() && inside(data[i]) {
                i += 1;
            }
            if i - start >= min {
                out.push(start..i);
            }
        }
        out
    }

    /// The SSE2 classifier's masks of a 64-byte block (the scalar ones
    /// where there is no SSE2).
    fn sse2_masks(block: &[u8]) -> [u64; CLASSES] {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            #[allow(unsafe_code)]
            // SAFETY: as in `Classifier::chunk`.
            unsafe {
                sse2::block_masks(block, Groups { views: true, crypto: true })
            }
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        scalar_block_masks(block)
    }

    /// Every SIMD classifier this CPU can run agrees with the definition.
    fn all_classifiers_agree(block: &[u8]) -> Result<(), TestCaseError> {
        let want = scalar_block_masks(block);
        prop_assert_eq!(sse2_masks(block), want, "sse2");
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        {
            if avx2::available() {
                // SAFETY: as in `Classifier::chunk`: this CPU has AVX2.
                prop_assert_eq!(unsafe { avx2::masks_of(block) }, want, "avx2");
            }
            if vbmi::available() {
                // SAFETY: as in `Classifier::chunk`: this CPU has
                // AVX-512BW and VBMI.
                prop_assert_eq!(unsafe { vbmi::masks_of(block) }, want, "avx-512 vbmi");
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn block_classifier_is_the_definition(block in proptest::collection::vec(any::<u8>(), 64)) {
            all_classifiers_agree(&block)?;
        }

        #[test]
        fn every_byte_value_is_classified_as_defined(start in 0u8..=192) {
            let block: Vec<u8> = (0..64u8).map(|i| start.wrapping_add(i)).collect();
            all_classifiers_agree(&block)?;
        }

        #[test]
        fn runs_are_the_naive_runs(
            data in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'Z'), Just(b'3'), Just(b' '), Just(b'-'), Just(b'!'), Just(b'0'), any::<u8>()], 0..700),
            min in 1usize..80,
        ) {
            let wanted: Vec<(Class, usize)> = ALL.iter().map(|&c| (c, min)).collect();
            let runs = ClassRuns::of(&data, &wanted);
            for class in ALL {
                let want = naive(&data, min, |b| contains(class, b));
                prop_assert_eq!(runs.get(class), want.as_slice());
            }
        }
    }

    #[test]
    fn runs_across_blocks() {
        let mut data = vec![b'!'; 300];
        data[50..200].fill(b'A');
        data[263..300].fill(b'b');
        let runs = ClassRuns::of(&data, &[(Class::Base64, 16), (Class::Iban, 151)]);
        assert_eq!(runs.get(Class::Base64), &[50..200, 263..300]);
        assert!(runs.get(Class::Iban).is_empty());
        assert!(runs.get(Class::Hex).is_empty(), "a class not asked for has no runs");
    }
}
