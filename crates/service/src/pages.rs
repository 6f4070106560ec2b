//! Assembled list pages, remembered by what they were assembled from.
//!
//! A page hit joins the page's index value and its rows' values into one body. A near tier
//! answers the same bytes (the same allocations) for as long as none of them changes, so a
//! page assembled once is answered again when its inputs are, byte for byte, the
//! allocations it was made from. The memo holds those allocations, so no other value can
//! take their addresses while it is kept: an identical address and length is an identical
//! value, and the remembered page is exactly what assembling would make now. Freshness
//! is the cache's business alone; this only spares the copying.
//!
//! Each thread keeps its own memo: one shared by the HTTP workers was a lock, and a
//! count of each page, that both took on every page hit.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use letip_cache::Lookup;

/// Bytes a thread's memo holds (pages, and the values and rows they were made from,
/// which it keeps alive) past which it starts afresh.
const MAX_BYTES: usize = 8 * 1024 * 1024;

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

/// Pages by key name, bounded in bytes, kept by each thread for one repository.
pub(crate) struct Pages {
    id: u64,
}

/// Tells memos apart in the threads' maps.
static MEMOS: AtomicU64 = AtomicU64::new(1);

impl Default for Pages {
    fn default() -> Self {
        Self {
            id: MEMOS.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages").field("id", &self.id).finish()
    }
}

/// A thread's memo, for the one repository (`owner`) it last served.
struct Memo {
    owner: u64,
    pages: HashMap<String, Assembled>,
    bytes: usize,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo {
        owner: 0,
        pages: HashMap::new(),
        bytes: 0,
    });
}

impl Pages {
    /// Runs `f` on this thread's memo of these pages (started afresh if it held
    /// another repository's).
    fn with<R>(&self, f: impl FnOnce(&mut Memo) -> R) -> Option<R> {
        MEMO.with(|memo| {
            let mut memo = memo.try_borrow_mut().ok()?;
            if memo.owner != self.id {
                memo.pages.clear();
                memo.bytes = 0;
                memo.owner = self.id;
            }
            Some(f(&mut memo))
        })
    }

    /// The page remembered under `name` if it was assembled from exactly `value` and
    /// `members` (every one a hit).
    pub(crate) fn get(&self, name: &str, value: &Bytes, members: &Arc<[Lookup]>) -> Option<Bytes> {
        self.with(|memo| {
            let a = memo.pages.get(name)?;
            (same(&a.value, value) && same_members(&a.members, members)).then(|| a.page.clone())
        })
        .flatten()
    }

    /// Remembers `page`, assembled from `value` and `members`, all of them hits.
    pub(crate) fn keep(&self, name: &str, value: Bytes, members: Arc<[Lookup]>, page: Bytes) {
        self.with(|memo| {
            let new = Assembled {
                value,
                members,
                page,
            };
            let size = new.bytes();
            if memo.bytes + size > MAX_BYTES {
                memo.pages.clear();
                memo.bytes = 0;
            }
            memo.bytes += size;
            if let Some(old) = memo.pages.insert(name.to_owned(), new) {
                memo.bytes -= old.bytes();
            }
        });
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
