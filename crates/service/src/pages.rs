//! Assembled list pages, remembered by what they were assembled from.
//!
//! A page hit joins the page's index value and its rows' values into one body. A near tier
//! answers the same bytes (the same allocations) for as long as none of them changes, so a
//! page assembled once is answered again when its inputs are, byte for byte, the
//! allocations it was made from. The memo holds those allocations, so no other value can
//! take their addresses while it is kept: an identical address and length is an identical
//! value, and the remembered page is exactly what assembling would make now. Freshness
//! is the cache's business alone; this only spares the copying.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

/// Bytes the memo holds (pages, and the values and rows they were made from, which it
/// keeps alive) past which it starts afresh.
const MAX_BYTES: usize = 16 * 1024 * 1024;

struct Assembled {
    value: Bytes,
    rows: Vec<Bytes>,
    page: Bytes,
}

impl Assembled {
    fn bytes(&self) -> usize {
        self.page.len() + self.value.len() + self.rows.iter().map(Bytes::len).sum::<usize>()
    }
}

fn same(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// Pages by key name, bounded in bytes.
#[derive(Default)]
pub(crate) struct Pages {
    pages: Mutex<(HashMap<String, Assembled>, usize)>,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.pages.lock().map_or(0, |p| p.0.len());
        f.debug_struct("Pages").field("kept", &kept).finish()
    }
}

impl Pages {
    /// The page remembered under `name` if it was assembled from exactly `value` and
    /// `rows`.
    pub(crate) fn get<'a>(
        &self,
        name: &str,
        value: &Bytes,
        rows: impl ExactSizeIterator<Item = &'a Bytes>,
    ) -> Option<Bytes> {
        let pages = self.pages.lock().ok()?;
        let a = pages.0.get(name)?;
        (same(&a.value, value)
            && a.rows.len() == rows.len()
            && a.rows.iter().zip(rows).all(|(a, b)| same(a, b)))
        .then(|| a.page.clone())
    }

    /// Remembers `page`, assembled from `value` and `rows`.
    pub(crate) fn keep(&self, name: &str, value: Bytes, rows: Vec<Bytes>, page: Bytes) {
        let Ok(mut pages) = self.pages.lock() else {
            return;
        };
        let (map, bytes) = &mut *pages;
        let new = Assembled { value, rows, page };
        let size = new.bytes();
        if *bytes + size > MAX_BYTES {
            map.clear();
            *bytes = 0;
        }
        *bytes += size;
        if let Some(old) = map.insert(name.to_owned(), new) {
            *bytes -= old.bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_answered_only_for_the_very_bytes_it_was_made_from() {
        let pages = Pages::default();
        let (value, row) = (
            Bytes::from_static(b"meta\n1"),
            Bytes::from(b"{\"id\":1}".to_vec()),
        );
        pages.keep(
            "p",
            value.clone(),
            vec![row.clone()],
            Bytes::from_static(b"page"),
        );
        assert_eq!(
            pages.get("p", &value, [&row].into_iter()).as_deref(),
            Some(&b"page"[..])
        );
        // Equal content in another allocation: assembled again, not assumed.
        let copy = Bytes::from(row.to_vec());
        assert!(pages.get("p", &value, [&copy].into_iter()).is_none());
        assert!(pages.get("p", &value, [&row, &row].into_iter()).is_none());
        assert!(pages.get("q", &value, [&row].into_iter()).is_none());
    }
}
