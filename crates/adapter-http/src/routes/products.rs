//! `/api/v1/products` and the admin catalogue routes.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use application::UseCases;
use application::catalog::{
    CreateProductError, GetProductError, ListProductsError, ProductPage, RestockProductCommand,
    RestockProductError, UpdateProductCommand, UpdateProductError,
};
use domain::ProductId;
use domain::page::{KeysetPage, Paging};
use domain::product::{
    Description, NewProduct, Price, Product, ProductName, ProductPatch, RestockQuantity, Stock,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::dto::{BodyRefusals, PageDto, path_id};
use crate::extract::JsonBody;
use crate::problem::ApiError;
use crate::refusals::{AdminOnly, Invalid, Refused};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductResponse {
    pub id: i64,
    pub name: String,
    pub description: String,
    /// KRW.
    pub price: i64,
    /// Units in stock at the moment of the query.
    pub stock: i64,
}

impl From<Product> for ProductResponse {
    fn from(p: Product) -> Self {
        Self {
            id: p.id.get(),
            name: p.name.as_str().to_owned(),
            description: p.description.as_str().to_owned(),
            price: p.price.get(),
            stock: p.stock.get(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateProductRequest {
    /// 1–200 characters after trimming white space; no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$",
        example = "Ceramic mug"
    )]
    pub name: String,
    /// At most 5,000 characters, no control characters (default empty).
    #[schema(max_length = 5000, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub description: Option<String>,
    /// KRW.
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 12_000)]
    pub price: i64,
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 100)]
    pub stock: i64,
}

impl TryFrom<CreateProductRequest> for NewProduct {
    type Error = ApiError;

    fn try_from(req: CreateProductRequest) -> Result<Self, ApiError> {
        Ok(Self {
            name: ProductName::new(&req.name)?,
            description: Description::new(req.description.as_deref().unwrap_or_default())?,
            price: Price::new(req.price)?,
            stock: Stock::new(req.stock)?,
        })
    }
}

/// Any of the fields; stock changes only through restocks and orders.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PatchProductRequest {
    /// 1–200 characters after trimming white space; no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub name: Option<String>,
    /// At most 5,000 characters, no control characters.
    #[schema(max_length = 5000, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub description: Option<String>,
    /// KRW.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub price: Option<i64>,
}

impl TryFrom<PatchProductRequest> for ProductPatch {
    type Error = ApiError;

    fn try_from(req: PatchProductRequest) -> Result<Self, ApiError> {
        Ok(Self {
            name: req.name.as_deref().map(ProductName::new).transpose()?,
            description: req
                .description
                .as_deref()
                .map(Description::new)
                .transpose()?,
            price: req.price.map(Price::new).transpose()?,
        })
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RestockRequest {
    /// Units to add; a restock that would take the stock over 1,000,000,000 is 409
    /// `STOCK_LIMIT_EXCEEDED`.
    #[schema(minimum = 1, maximum = 1_000_000_000, example = 50)]
    pub quantity: i64,
}

impl From<CreateProductError> for ApiError {
    fn from(err: CreateProductError) -> Self {
        match err {
            CreateProductError::Unknown(e) => Self::unknown(&e),
        }
    }
}

crate::refusals!(GetProductError {
    ProductNotFound;
    unlisted Unknown
});

impl From<GetProductError> for ApiError {
    fn from(err: GetProductError) -> Self {
        match err {
            GetProductError::ProductNotFound => product_not_found(),
            GetProductError::Unknown(e) => Self::unknown(&e),
        }
    }
}

impl From<ListProductsError> for ApiError {
    fn from(err: ListProductsError) -> Self {
        match err {
            ListProductsError::Unknown(e) => Self::unknown(&e),
        }
    }
}

crate::refusals!(UpdateProductError {
    ProductNotFound;
    unlisted Unknown
});

impl From<UpdateProductError> for ApiError {
    fn from(err: UpdateProductError) -> Self {
        match err {
            UpdateProductError::ProductNotFound => product_not_found(),
            UpdateProductError::Unknown(e) => Self::unknown(&e),
        }
    }
}

crate::refusals!(RestockProductError {
    ProductNotFound, StockLimitExceeded;
    unlisted Unknown
});

impl From<RestockProductError> for ApiError {
    fn from(err: RestockProductError) -> Self {
        match err {
            RestockProductError::ProductNotFound => product_not_found(),
            RestockProductError::StockLimitExceeded => Self::conflict(
                "STOCK_LIMIT_EXCEEDED",
                format!("the stock may not exceed {}", Stock::MAX),
            ),
            RestockProductError::Unknown(e) => Self::unknown(&e),
        }
    }
}

fn product_not_found() -> ApiError {
    ApiError::not_found("PRODUCT_NOT_FOUND", "no product with this id")
}

/// `?page=&size=` (numbered pages) or `?after=&size=` (keyset pages).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductListQuery {
    /// 1-based page number (default 1). Not with `after`.
    #[param(nullable = false, minimum = 1, maximum = 1_000_000)]
    pub page: Option<i64>,
    /// Items per page, 1..=100 (default 20).
    #[param(nullable = false, minimum = 1, maximum = 100)]
    pub size: Option<i64>,
    /// Keyset cursor: list the products whose id is greater than this (take it from the
    /// previous answer's `nextAfter`, or the last id of page 1). Every depth costs what
    /// the first page costs. Not with `page`.
    #[param(nullable = false, minimum = 1)]
    pub after: Option<i64>,
}

/// A keyset page: the products after the cursor, by id.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductsAfterDto {
    pub items: Vec<ProductResponse>,
    pub size: u32,
    /// Products in the whole catalogue.
    pub total_count: i64,
    /// The `after` of the next page; `null` when no product follows this page.
    #[schema(required = true)]
    pub next_after: Option<i64>,
}

impl From<KeysetPage<Product>> for ProductsAfterDto {
    fn from(page: KeysetPage<Product>) -> Self {
        Self {
            size: page.request.size(),
            total_count: page.total_count,
            next_after: page.next_after,
            items: page.items.into_iter().map(ProductResponse::from).collect(),
        }
    }
}

/// The list's body: a numbered page for `?page=`, a keyset page for `?after=`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ProductListResponse {
    Numbered(PageDto<ProductResponse>),
    After(ProductsAfterDto),
}

fn product_id(raw: &str) -> Result<ProductId, ApiError> {
    path_id(raw, "id", ProductId::parse)
}

/// The catalogue, by id: numbered pages (`page`, `size`) or keyset pages
/// (`after`, `size`, with `nextAfter`); `page` and `after` together are 400.
#[utoipa::path(
    get, path = "/api/v1/products", tag = "products",
    operation_id = "listProducts",
    params(ProductListQuery),
    responses(
        (status = 200, description = "`{items, page, size, totalCount}` without `after`; `{items, size, totalCount, nextAfter}` with it", body = ProductListResponse),
        Refused<Invalid>,
    )
)]
pub async fn list(
    use_cases: web::Data<UseCases>,
    query: web::Query<ProductListQuery>,
) -> Result<web::Json<ProductListResponse>, ApiError> {
    let paging = Paging::new(query.page, query.size, query.after)?;
    let body = match use_cases.list_products.execute(paging).await? {
        ProductPage::Numbered(page) => {
            ProductListResponse::Numbered(PageDto::from_page(page, ProductResponse::from))
        }
        ProductPage::After(page) => ProductListResponse::After(page.into()),
    };
    Ok(web::Json(body))
}

/// One product.
#[utoipa::path(
    get, path = "/api/v1/products/{id}", tag = "products",
    operation_id = "getProduct",
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, body = ProductResponse),
        Refused<(Invalid, GetProductError)>,
    )
)]
pub async fn get(
    use_cases: web::Data<UseCases>,
    id: web::Path<String>,
) -> Result<web::Json<ProductResponse>, ApiError> {
    let product = use_cases.get_product.execute(product_id(&id)?).await?;
    Ok(web::Json(product.into()))
}

/// Creates a product (admin).
#[utoipa::path(
    post, path = "/api/v1/admin/products", tag = "admin",
    operation_id = "adminCreateProduct",
    request_body = CreateProductRequest,
    security(("admin" = [])),
    responses(
        (status = 201, body = ProductResponse, headers(("Location" = String))),
        Refused<(Invalid, AdminOnly)>,
        BodyRefusals,
    )
)]
pub async fn create(
    use_cases: web::Data<UseCases>,
    body: JsonBody<CreateProductRequest>,
) -> Result<HttpResponse, ApiError> {
    let product = use_cases
        .create_product
        .execute(NewProduct::try_from(body.0)?)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/products/{}", product.id)))
        .json(ProductResponse::from(product)))
}

/// Changes a product's name, description or price (admin).
#[utoipa::path(
    patch, path = "/api/v1/admin/products/{id}", tag = "admin",
    operation_id = "adminUpdateProduct",
    params(("id" = i64, Path, minimum = 1)),
    request_body = PatchProductRequest,
    security(("admin" = [])),
    responses(
        (status = 200, body = ProductResponse),
        Refused<(Invalid, AdminOnly, UpdateProductError)>,
        BodyRefusals,
    )
)]
pub async fn patch(
    use_cases: web::Data<UseCases>,
    id: web::Path<String>,
    body: JsonBody<PatchProductRequest>,
) -> Result<web::Json<ProductResponse>, ApiError> {
    let cmd = UpdateProductCommand {
        product_id: product_id(&id)?,
        patch: ProductPatch::try_from(body.0)?,
    };
    Ok(web::Json(
        use_cases.update_product.execute(cmd).await?.into(),
    ))
}

/// Adds stock atomically (admin).
#[utoipa::path(
    post, path = "/api/v1/admin/products/{id}/restock", tag = "admin",
    operation_id = "adminRestockProduct",
    params(("id" = i64, Path, minimum = 1)),
    request_body = RestockRequest,
    security(("admin" = [])),
    responses(
        (status = 200, body = ProductResponse),
        Refused<(Invalid, AdminOnly, RestockProductError)>,
        BodyRefusals,
    )
)]
pub async fn restock(
    use_cases: web::Data<UseCases>,
    id: web::Path<String>,
    body: JsonBody<RestockRequest>,
) -> Result<web::Json<ProductResponse>, ApiError> {
    let cmd = RestockProductCommand {
        product_id: product_id(&id)?,
        quantity: RestockQuantity::new(body.quantity)?,
    };
    Ok(web::Json(
        use_cases.restock_product.execute(cmd).await?.into(),
    ))
}
