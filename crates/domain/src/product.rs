//! Products (상품): the catalogue with live stock.

use crate::{ProductId, ValidationError};

/// At most 200 characters as sent (surrounding spaces count, as a JSON Schema
/// `maxLength` counts them), not blank, no control characters; kept trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName(String);

impl ProductName {
    pub const MAX_CHARS: usize = 200;

    /// # Errors
    /// [`ValidationError`] on `name` when blank, longer than 200 characters or holding
    /// a control character.
    pub fn new(raw: &str) -> Result<Self, ValidationError> {
        ValidationError::refuse_control_characters("name", raw)?;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ValidationError::new("name", "must not be blank"));
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(ValidationError::new(
                "name",
                "must be at most 200 characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// Wraps a name read back from the store, which only holds validated names.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text, at most 5,000 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 5_000;

    /// # Errors
    /// [`ValidationError`] on `description` when longer than 5,000 characters or holding
    /// a control character.
    pub fn new(raw: &str) -> Result<Self, ValidationError> {
        ValidationError::refuse_control_characters("description", raw)?;
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(ValidationError::new(
                "description",
                "must be at most 5000 characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// Wraps a description read back from the store.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A unit price in KRW: `0..=1_000_000_000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Price(i64);

impl Price {
    pub const MAX: i64 = 1_000_000_000;

    /// # Errors
    /// [`ValidationError`] on `price` when negative or above 1,000,000,000.
    pub fn new(raw: i64) -> Result<Self, ValidationError> {
        if (0..=Self::MAX).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(ValidationError::new(
                "price",
                format!("must be between 0 and {}", Self::MAX),
            ))
        }
    }

    pub const fn from_trusted(raw: i64) -> Self {
        Self(raw)
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

/// Units in stock: `0..=1_000_000_000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stock(i64);

impl Stock {
    pub const MAX: i64 = 1_000_000_000;

    /// # Errors
    /// [`ValidationError`] on `stock` when negative or above 1,000,000,000.
    pub fn new(raw: i64) -> Result<Self, ValidationError> {
        if (0..=Self::MAX).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(ValidationError::new(
                "stock",
                format!("must be between 0 and {}", Self::MAX),
            ))
        }
    }

    pub const fn from_trusted(raw: i64) -> Self {
        Self(raw)
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

/// Units added by one restock: `1..=1_000_000_000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestockQuantity(i64);

impl RestockQuantity {
    /// # Errors
    /// [`ValidationError`] on `quantity` when not positive or above 1,000,000,000.
    pub fn new(raw: i64) -> Result<Self, ValidationError> {
        if (1..=Stock::MAX).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(ValidationError::new(
                "quantity",
                format!("must be between 1 and {}", Stock::MAX),
            ))
        }
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

/// The decision to add stock. Like a credit, it is applied atomically by the store
/// only while the stock is at most `ceiling`, so concurrent restocks and orders never
/// lose an update and stock never passes [`Stock::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restock {
    pub product_id: ProductId,
    pub quantity: RestockQuantity,
    pub ceiling: Stock,
}

impl Restock {
    pub const fn new(product_id: ProductId, quantity: RestockQuantity) -> Self {
        Self {
            product_id,
            quantity,
            ceiling: Stock(Stock::MAX - quantity.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub name: ProductName,
    pub description: Description,
    pub price: Price,
    pub stock: Stock,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: ProductName,
    pub description: Description,
    pub price: Price,
    pub stock: Stock,
}

/// The fields an operator may change; stock only moves through restocks and orders.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductPatch {
    pub name: Option<ProductName>,
    pub description: Option<Description>,
    pub price: Option<Price>,
}

impl ProductPatch {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.description.is_none() && self.price.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_must_not_be_blank_or_too_long() {
        assert_eq!(ProductName::new("  Mug ").unwrap().as_str(), "Mug");
        assert!(ProductName::new("   ").is_err());
        assert!(ProductName::new(&"가".repeat(200)).is_ok());
        assert!(ProductName::new(&"가".repeat(201)).is_err());
        // The limit is on the name as sent: spaces around it count.
        assert!(ProductName::new(&format!(" {}", "가".repeat(200))).is_err());
        assert!(ProductName::new(&format!(" {} ", "가".repeat(198))).is_ok());
    }

    #[test]
    fn text_refuses_control_characters() {
        for bad in [
            "a\u{0}b",
            "tab\there",
            "esc\u{1b}[31m",
            "del\u{7f}",
            "Mug\n",
        ] {
            assert_eq!(ProductName::new(bad).unwrap_err().field, "name", "{bad:?}");
            assert_eq!(
                Description::new(bad).unwrap_err().field,
                "description",
                "{bad:?}"
            );
        }
        assert!(Description::new("Stoneware — 350 ml, 가을").is_ok());
    }

    #[test]
    fn prices_and_stock_are_non_negative_and_bounded() {
        assert!(Price::new(0).is_ok());
        assert_eq!(Price::new(-1).unwrap_err().field, "price");
        assert!(Price::new(Price::MAX + 1).is_err());
        assert!(Stock::new(0).is_ok());
        assert_eq!(Stock::new(-1).unwrap_err().field, "stock");
    }

    #[test]
    fn restocks_are_positive_and_keep_stock_under_the_maximum() {
        assert_eq!(RestockQuantity::new(0).unwrap_err().field, "quantity");
        assert!(RestockQuantity::new(-5).is_err());
        let restock = Restock::new(
            ProductId::new(1).unwrap(),
            RestockQuantity::new(10).unwrap(),
        );
        assert_eq!(restock.ceiling.get(), Stock::MAX - 10);
    }

    #[test]
    fn descriptions_are_bounded() {
        assert!(Description::new("").is_ok());
        assert!(Description::new(&"x".repeat(5_001)).is_err());
    }
}
