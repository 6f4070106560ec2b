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
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use letip_cache::Lookup;

/// Bytes the memo holds (pages, and the values and rows they were made from, which it
/// keeps alive) past which it starts afresh.
const MAX_BYTES: usize = 16 * 1024 * 1024;

struct Assembled {
    value: Bytes,
    members: Arc<[Lookup]>,
    page: Bytes,
}

impl Assembled {
    fn bytes(&self) -> usize {
        self.page.len() + self.value.len() + self.members.iter().map(hit_len).sum::<usize>()
    }
}

fn hit_len(l: &Lookup) -> usize {
    match l {
        Lookup::Hit(b) => b.len(),
        Lookup::Miss(_) => 0,
    }
}

fn same(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// Whether two lookups of a page's rows are the very same: the same shared lookups (a
/// near tier hands out one per page copy), or hits of the same allocations each.
fn same_members(a: &Arc<[Lookup]>, b: &Arc<[Lookup]>) -> bool {
    Arc::ptr_eq(a, b)
        || (a.len() == b.len()
            && a.iter().zip(b.iter()).all(|pair| match pair {
                (Lookup::Hit(a), Lookup::Hit(b)) => same(a, b),
                _ => false,
            }))
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
    /// `members` (every one a hit).
    pub(crate) fn get(&self, name: &str, value: &Bytes, members: &Arc<[Lookup]>) -> Option<Bytes> {
        let pages = self.pages.lock().ok()?;
        let a = pages.0.get(name)?;
        (same(&a.value, value) && same_members(&a.members, members)).then(|| a.page.clone())
    }

    /// Remembers `page`, assembled from `value` and `members`, all of them hits.
    pub(crate) fn keep(&self, name: &str, value: Bytes, members: Arc<[Lookup]>, page: Bytes) {
        let Ok(mut pages) = self.pages.lock() else {
            return;
        };
        let (map, bytes) = &mut *pages;
        let new = Assembled {
            value,
            members,
            page,
        };
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
        let hits = |rows: &[&Bytes]| -> Arc<[Lookup]> {
            rows.iter().map(|b| Lookup::Hit((*b).clone())).collect()
        };
        let members = hits(&[&row]);
        pages.keep(
            "p",
            value.clone(),
            members.clone(),
            Bytes::from_static(b"page"),
        );
        // The same shared lookups, or other lookups of the same allocations.
        assert_eq!(
            pages.get("p", &value, &members).as_deref(),
            Some(&b"page"[..])
        );
        assert_eq!(
            pages.get("p", &value, &hits(&[&row])).as_deref(),
            Some(&b"page"[..])
        );
        // Equal content in another allocation: assembled again, not assumed.
        let copy = Bytes::from(row.to_vec());
        assert!(pages.get("p", &value, &hits(&[&copy])).is_none());
        assert!(pages.get("p", &value, &hits(&[&row, &row])).is_none());
        assert!(pages.get("q", &value, &members).is_none());
        let missed: Arc<[Lookup]> = vec![Lookup::Miss(letip_cache::Ticket::none())].into();
        assert!(pages.get("p", &value, &missed).is_none());
    }
}
