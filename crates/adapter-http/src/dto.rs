//! Request and response bodies (camelCase JSON), and their conversion into domain
//! commands. Requests are parsed with `TryFrom` into validated domain types.

use domain::{PageRequest, UserId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::problem::ApiError;

/// `?userId=` of the user-scoped reads.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// The user whose data to read.
    #[param(minimum = 1)]
    pub user_id: i64,
}

impl UserQuery {
    pub fn user(&self) -> Result<UserId, ApiError> {
        Ok(UserId::new(self.user_id)?)
    }
}

/// `?userId=&page=&size=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct UserPageQuery {
    #[param(minimum = 1)]
    pub user_id: i64,
    #[param(minimum = 1)]
    pub page: Option<i64>,
    #[param(minimum = 1, maximum = 100)]
    pub size: Option<i64>,
}

impl UserPageQuery {
    pub fn parse(&self) -> Result<(UserId, PageRequest), ApiError> {
        Ok((
            UserId::new(self.user_id)?,
            PageRequest::new(self.page, self.size)?,
        ))
    }
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageDto<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub size: u32,
    pub total_count: i64,
}

impl<T> PageDto<T> {
    pub fn from_page<D>(page: domain::Page<D>, f: impl FnMut(D) -> T) -> Self {
        Self {
            page: page.request.page(),
            size: page.request.size(),
            total_count: page.total_count,
            items: page.items.into_iter().map(f).collect(),
        }
    }
}
