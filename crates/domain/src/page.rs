//! Pagination: 1-based pages of at most [`PageRequest::MAX_SIZE`] items.

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
        let size = size.unwrap_or(i64::from(Self::DEFAULT_SIZE));
        if !(1..=i64::from(Self::MAX_PAGE)).contains(&page) {
            return Err(ValidationError::new(
                "page",
                format!("must be between 1 and {}", Self::MAX_PAGE),
            ));
        }
        if !(1..=i64::from(Self::MAX_SIZE)).contains(&size) {
            return Err(ValidationError::new(
                "size",
                format!("must be between 1 and {}", Self::MAX_SIZE),
            ));
        }
        Ok(Self {
            page: u32::try_from(page).unwrap_or(1),
            size: u32::try_from(size).unwrap_or(Self::DEFAULT_SIZE),
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
}
