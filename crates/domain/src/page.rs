//! Pagination: 1-based pages of at most [`PageRequest::MAX_SIZE`] items, and keyset
//! pages ([`KeysetRequest`]) that start after a given id, so that any depth of a long
//! list costs what its first page costs (an `OFFSET` makes the store walk every item
//! before the page).

use crate::ValidationError;

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    page: u32,
    size: u32,
}

impl PageRequest {
    pub const DEFAULT_SIZE: u32 = 20;
    pub const MAX_SIZE: u32 = 100;
    /// Pages beyond this are refused so `offset` can never overflow a query.
    pub const MAX_PAGE: u32 = 1_000_000;

    /// Parses `?page=&size=`, either of which may be absent.
    ///
    /// # Errors
    /// [`ValidationError`] when `page` is outside `1..=1_000_000` or `size` outside `1..=100`.
    pub fn new(page: Option<i64>, size: Option<i64>) -> Result<Self, ValidationError> {
        let page = page.unwrap_or(1);
        if !(1..=i64::from(Self::MAX_PAGE)).contains(&page) {
            return Err(ValidationError::new(
                "page",
                format!("must be between 1 and {}", Self::MAX_PAGE),
            ));
        }
        Ok(Self {
            page: u32::try_from(page).unwrap_or(1),
            size: parse_size(size)?,
        })
    }

    pub const fn page(self) -> u32 {
        self.page
    }

    pub const fn size(self) -> u32 {
        self.size
    }

    /// Number of items before this page.
    pub const fn offset(self) -> i64 {
        (self.page as i64 - 1) * self.size as i64
    }

    pub const fn limit(self) -> i64 {
        self.size as i64
    }
}

/// `size` of either kind of page: absent means [`PageRequest::DEFAULT_SIZE`].
fn parse_size(size: Option<i64>) -> Result<u32, ValidationError> {
    let size = size.unwrap_or(i64::from(PageRequest::DEFAULT_SIZE));
    if (1..=i64::from(PageRequest::MAX_SIZE)).contains(&size) {
        Ok(u32::try_from(size).unwrap_or(PageRequest::DEFAULT_SIZE))
    } else {
        Err(ValidationError::new(
            "size",
            format!("must be between 1 and {}", PageRequest::MAX_SIZE),
        ))
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            size: Self::DEFAULT_SIZE,
        }
    }
}

/// One page of a list, with the total count of the whole list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub request: PageRequest,
    pub total_count: i64,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            request: self.request,
            total_count: self.total_count,
        }
    }
}

/// A validated keyset request: the first `size` items whose id is greater than `after`,
/// by id. Unlike an offset, the cursor lets the store seek straight to the page through
/// the id index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeysetRequest {
    after: i64,
    size: u32,
}

impl KeysetRequest {
    /// Parses `?after=&size=`; `size` may be absent (20).
    ///
    /// # Errors
    /// [`ValidationError`] when `after` is not positive (ids start at 1, so there is
    /// nothing a cursor ≤ 0 could point after that the first page does not already
    /// show) or `size` is outside `1..=100`.
    pub fn new(after: i64, size: Option<i64>) -> Result<Self, ValidationError> {
        if after < 1 {
            return Err(ValidationError::new("after", "must be a positive id"));
        }
        Ok(Self {
            after,
            size: parse_size(size)?,
        })
    }

    /// The items listed have ids greater than this.
    pub const fn after(self) -> i64 {
        self.after
    }

    pub const fn size(self) -> u32 {
        self.size
    }

    /// How many items the store reads: one more than the page holds, so that whether
    /// a next page exists is known without another query.
    pub const fn fetch_limit(self) -> i64 {
        self.size as i64 + 1
    }
}

/// What a list request asked for: a numbered page or the page after a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    Numbered(PageRequest),
    After(KeysetRequest),
}

impl Paging {
    /// Parses `?page=&size=&after=`. `after` selects keyset paging; `page` and `after`
    /// together are refused rather than one silently winning.
    ///
    /// # Errors
    /// [`ValidationError`] on `after` when both are given, otherwise as
    /// [`PageRequest::new`] or [`KeysetRequest::new`].
    pub fn new(
        page: Option<i64>,
        size: Option<i64>,
        after: Option<i64>,
    ) -> Result<Self, ValidationError> {
        match (page, after) {
            (Some(_), Some(_)) => Err(ValidationError::new(
                "after",
                "must not be combined with page",
            )),
            (_, Some(after)) => Ok(Self::After(KeysetRequest::new(after, size)?)),
            (page, None) => Ok(Self::Numbered(PageRequest::new(page, size)?)),
        }
    }
}

/// One keyset page, with the total count of the whole list and the cursor of the next
/// page (`None` when no item follows this page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysetPage<T> {
    pub items: Vec<T>,
    pub request: KeysetRequest,
    pub total_count: i64,
    pub next_after: Option<i64>,
}

impl<T> KeysetPage<T> {
    /// Builds the page from what the store read: up to
    /// [`KeysetRequest::fetch_limit`] items in id order. The extra item, if read,
    /// only proves that a next page exists and is dropped.
    pub fn from_fetched(
        mut fetched: Vec<T>,
        request: KeysetRequest,
        total_count: i64,
        id: impl Fn(&T) -> i64,
    ) -> Self {
        let size = request.size() as usize;
        let next_after = if fetched.len() > size {
            fetched.truncate(size);
            fetched.last().map(id)
        } else {
            None
        };
        Self {
            items: fetched,
            request,
            total_count,
            next_after,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> KeysetPage<U> {
        KeysetPage {
            items: self.items.into_iter().map(f).collect(),
            request: self.request,
            total_count: self.total_count,
            next_after: self.next_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_the_first_page_of_twenty() {
        let p = PageRequest::new(None, None).unwrap();
        assert_eq!((p.page(), p.size(), p.offset()), (1, 20, 0));
    }

    #[test]
    fn offset_counts_the_items_of_earlier_pages() {
        let p = PageRequest::new(Some(3), Some(100)).unwrap();
        assert_eq!((p.offset(), p.limit()), (200, 100));
    }

    #[test]
    fn out_of_range_pages_and_sizes_are_rejected() {
        assert_eq!(PageRequest::new(Some(0), None).unwrap_err().field, "page");
        assert_eq!(
            PageRequest::new(Some(1_000_001), None).unwrap_err().field,
            "page"
        );
        assert_eq!(PageRequest::new(None, Some(0)).unwrap_err().field, "size");
        assert_eq!(PageRequest::new(None, Some(101)).unwrap_err().field, "size");
        assert!(PageRequest::new(Some(1_000_000), Some(100)).is_ok());
    }

    #[test]
    fn a_cursor_must_be_a_positive_id_and_sizes_are_bounded_as_for_pages() {
        assert_eq!(KeysetRequest::new(0, None).unwrap_err().field, "after");
        assert_eq!(KeysetRequest::new(-3, None).unwrap_err().field, "after");
        assert_eq!(KeysetRequest::new(1, Some(0)).unwrap_err().field, "size");
        assert_eq!(KeysetRequest::new(1, Some(101)).unwrap_err().field, "size");
        let k = KeysetRequest::new(i64::MAX, None).unwrap();
        assert_eq!((k.after(), k.size(), k.fetch_limit()), (i64::MAX, 20, 21));
    }

    #[test]
    fn after_selects_keyset_paging_and_refuses_a_page_number_beside_it() {
        assert_eq!(
            Paging::new(None, Some(5), Some(9)).unwrap(),
            Paging::After(KeysetRequest::new(9, Some(5)).unwrap())
        );
        assert_eq!(
            Paging::new(Some(2), None, None).unwrap(),
            Paging::Numbered(PageRequest::new(Some(2), None).unwrap())
        );
        assert_eq!(
            Paging::new(Some(1), None, Some(9)).unwrap_err().field,
            "after"
        );
        assert_eq!(Paging::new(None, None, Some(0)).unwrap_err().field, "after");
    }

    #[test]
    fn the_extra_item_read_proves_a_next_page_and_is_dropped() {
        let request = KeysetRequest::new(10, Some(2)).unwrap();
        let full = KeysetPage::from_fetched(vec![11, 12, 15], request, 9, |i| *i);
        assert_eq!((full.items, full.next_after), (vec![11, 12], Some(12)));
        let last = KeysetPage::from_fetched(vec![11, 12], request, 9, |i| *i);
        assert_eq!((last.items, last.next_after), (vec![11, 12], None));
        let empty = KeysetPage::from_fetched(Vec::<i64>::new(), request, 9, |i| *i);
        assert_eq!(
            (empty.items.len(), empty.next_after, empty.total_count),
            (0, None, 9)
        );
    }
}
