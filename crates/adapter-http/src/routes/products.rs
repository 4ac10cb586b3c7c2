//! `/api/v1/products` and the admin catalogue routes.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use application::UseCases;
use application::catalog::CatalogError;
use domain::ProductId;
use domain::product::{
    Description, NewProduct, Price, Product, ProductName, ProductPatch, RestockQuantity, Stock,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::{PageDto, PageQuery};
use crate::extract::JsonBody;
use crate::problem::{ApiError, Problem};

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
    #[schema(example = "Ceramic mug")]
    pub name: String,
    pub description: Option<String>,
    #[schema(minimum = 0, example = 12_000)]
    pub price: i64,
    #[schema(minimum = 0, example = 100)]
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
    pub name: Option<String>,
    pub description: Option<String>,
    #[schema(minimum = 0)]
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
    /// Units to add, > 0.
    #[schema(minimum = 1, example = 50)]
    pub quantity: i64,
}

impl From<CatalogError> for ApiError {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::ProductNotFound => {
                Self::not_found("PRODUCT_NOT_FOUND", "no product with this id")
            }
            CatalogError::StockLimitExceeded => Self::validation(
                "quantity",
                format!("the stock may not exceed {}", Stock::MAX),
            ),
            CatalogError::Unknown(e) => Self::unknown(&e),
        }
    }
}

fn product_id(raw: i64) -> Result<ProductId, ApiError> {
    Ok(ProductId::parse(raw, "id")?)
}

/// The catalogue, by id (seed).
#[utoipa::path(
    get, path = "/api/v1/products", tag = "products",
    params(PageQuery),
    responses(
        (status = 200, body = PageDto<ProductResponse>),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list(
    use_cases: web::Data<UseCases>,
    query: web::Query<PageQuery>,
) -> Result<web::Json<PageDto<ProductResponse>>, ApiError> {
    let page = use_cases.catalog.list(query.request()?).await?;
    Ok(web::Json(PageDto::from_page(page, ProductResponse::from)))
}

/// One product.
#[utoipa::path(
    get, path = "/api/v1/products/{id}", tag = "products",
    params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, body = ProductResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "PRODUCT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    use_cases: web::Data<UseCases>,
    id: web::Path<i64>,
) -> Result<web::Json<ProductResponse>, ApiError> {
    let product = use_cases.catalog.get(product_id(id.into_inner())?).await?;
    Ok(web::Json(product.into()))
}

/// Creates a product (admin).
#[utoipa::path(
    post, path = "/api/v1/admin/products", tag = "admin",
    request_body = CreateProductRequest,
    security(("admin" = [])),
    responses(
        (status = 201, body = ProductResponse, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "ADMIN_DISABLED", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create(
    use_cases: web::Data<UseCases>,
    body: JsonBody<CreateProductRequest>,
) -> Result<HttpResponse, ApiError> {
    let product = use_cases
        .catalog
        .create(NewProduct::try_from(body.0)?)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/products/{}", product.id)))
        .json(ProductResponse::from(product)))
}

/// Changes a product's name, description or price (admin).
#[utoipa::path(
    patch, path = "/api/v1/admin/products/{id}", tag = "admin",
    params(("id" = i64, Path, minimum = 1)),
    request_body = PatchProductRequest,
    security(("admin" = [])),
    responses(
        (status = 200, body = ProductResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "PRODUCT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn patch(
    use_cases: web::Data<UseCases>,
    id: web::Path<i64>,
    body: JsonBody<PatchProductRequest>,
) -> Result<web::Json<ProductResponse>, ApiError> {
    let id = product_id(id.into_inner())?;
    let patch = ProductPatch::try_from(body.0)?;
    Ok(web::Json(use_cases.catalog.update(id, patch).await?.into()))
}

/// Adds stock atomically (admin).
#[utoipa::path(
    post, path = "/api/v1/admin/products/{id}/restock", tag = "admin",
    params(("id" = i64, Path, minimum = 1)),
    request_body = RestockRequest,
    security(("admin" = [])),
    responses(
        (status = 200, body = ProductResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "PRODUCT_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn restock(
    use_cases: web::Data<UseCases>,
    id: web::Path<i64>,
    body: JsonBody<RestockRequest>,
) -> Result<web::Json<ProductResponse>, ApiError> {
    let id = product_id(id.into_inner())?;
    let quantity = RestockQuantity::new(body.quantity)?;
    Ok(web::Json(
        use_cases.catalog.restock(id, quantity).await?.into(),
    ))
}
