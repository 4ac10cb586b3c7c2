//! Reading a user's orders.

use std::sync::Arc;

use domain::order::Order;
use domain::ports::OrderStore;
use domain::user::ForUser;
use domain::{OrderId, Page, PageRequest, UserId};

/// Reads one of the user's orders with its lines.
#[derive(Clone)]
pub struct GetOrder {
    orders: Arc<dyn OrderStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum GetOrderError {
    #[error("user not found")]
    UserNotFound,
    #[error("order not found")]
    OrderNotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl GetOrder {
    pub fn new(orders: Arc<dyn OrderStore>) -> Self {
        Self { orders }
    }

    /// # Errors
    /// [`GetOrderError::UserNotFound`], [`GetOrderError::OrderNotFound`] (also for
    /// another user's order).
    #[tracing::instrument(name = "get_order", skip_all, fields(order_id = %id))]
    pub async fn execute(&self, user: UserId, id: OrderId) -> Result<Order, GetOrderError> {
        match self.orders.find(user, id).await? {
            ForUser::UnknownUser => Err(GetOrderError::UserNotFound),
            ForUser::Found(None) => Err(GetOrderError::OrderNotFound),
            ForUser::Found(Some(order)) => Ok(order),
        }
    }
}

/// Reads one page of the user's orders, newest first.
#[derive(Clone)]
pub struct ListOrders {
    orders: Arc<dyn OrderStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListOrdersError {
    #[error("user not found")]
    UserNotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl ListOrders {
    pub fn new(orders: Arc<dyn OrderStore>) -> Self {
        Self { orders }
    }

    /// # Errors
    /// [`ListOrdersError::UserNotFound`].
    #[tracing::instrument(name = "list_orders", skip_all, fields(user_id = %user))]
    pub async fn execute(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> Result<Page<Order>, ListOrdersError> {
        match self.orders.of_user(user, page).await? {
            ForUser::UnknownUser => Err(ListOrdersError::UserNotFound),
            ForUser::Found(page) => Ok(page),
        }
    }
}

crate::debug_opaque!(GetOrder, ListOrders);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::fixtures::{oid, order, uid};
    use domain::order::OrderStatus;
    use domain::ports::MockOrderStore;

    fn get_order(store: MockOrderStore) -> GetOrder {
        GetOrder::new(Arc::new(store))
    }

    #[tokio::test]
    async fn reading_an_order_tells_an_unknown_user_from_an_unknown_order() {
        let mut store = MockOrderStore::new();
        store
            .expect_find()
            .withf(|user, id| *user == uid(1) && *id == oid())
            .returning(|_, _| Ok(ForUser::UnknownUser));
        let err = get_order(store).execute(uid(1), oid()).await.unwrap_err();
        assert!(matches!(err, GetOrderError::UserNotFound));

        let mut store = MockOrderStore::new();
        store
            .expect_find()
            .returning(|_, _| Ok(ForUser::Found(None)));
        let err = get_order(store).execute(uid(1), oid()).await.unwrap_err();
        assert!(matches!(err, GetOrderError::OrderNotFound));

        let mut store = MockOrderStore::new();
        store
            .expect_find()
            .returning(|_, _| Ok(ForUser::Found(Some(order(1, OrderStatus::Paid)))));
        assert_eq!(
            get_order(store)
                .execute(uid(1), oid())
                .await
                .unwrap()
                .status,
            OrderStatus::Paid
        );
    }

    #[tokio::test]
    async fn listing_an_unknown_users_orders_is_not_found() {
        let mut store = MockOrderStore::new();
        store
            .expect_of_user()
            .withf(|user, page| *user == uid(1) && page.page() == 2 && page.size() == 5)
            .times(1)
            .returning(|_, _| Ok(ForUser::UnknownUser));
        let err = ListOrders::new(Arc::new(store))
            .execute(uid(1), PageRequest::new(Some(2), Some(5)).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, ListOrdersError::UserNotFound));
    }
}
