//! How the catalog's stores (products, customers) answer over HTTP, the
//! same in every dialect that serves them.

use axum::http::StatusCode;
use keyledger_app::aggregates::CatalogError;
use keyledger_app::customers::CustomerCommandError;
use keyledger_app::products::ProductCommandError;
use keyledger_domain::{CustomerError, ProductError};

use crate::error::ApiError;

/// The answer to a catalog store's failure that is not a refusal.
pub fn store_failure<E>(error: CatalogError<E>, refused: impl FnOnce(E) -> ApiError) -> ApiError {
    match error {
        CatalogError::Refused(error) => refused(error),
        // Kinds with a unique column map this themselves.
        CatalogError::Taken => ApiError::bad_request("taken", "Another record of the tenant holds this value")
            .with_status(StatusCode::CONFLICT),
        CatalogError::Contended => ApiError::contended(),
        CatalogError::Store(error) => ApiError::internal(error),
    }
}

impl From<ProductCommandError> for ApiError {
    fn from(error: ProductCommandError) -> Self {
        if let CatalogError::Taken = error {
            return ApiError::field("code", "Another product of the tenant has this code")
                .with_code("product_code_taken")
                .with_status(StatusCode::CONFLICT);
        }
        store_failure(error, |refused| match refused {
            ProductError::NotFound => product_not_found(),
            ProductError::AlreadyExists => {
                ApiError::bad_request("product_exists", "The product exists already").with_status(StatusCode::CONFLICT)
            }
            ProductError::ReleaseExists => {
                ApiError::field("version", "This version is published on this channel already")
                    .with_code("release_exists")
                    .with_status(StatusCode::CONFLICT)
            }
        })
    }
}

impl From<CustomerCommandError> for ApiError {
    fn from(error: CustomerCommandError) -> Self {
        store_failure(error, |refused| match refused {
            CustomerError::NotFound => customer_not_found(),
            CustomerError::AlreadyExists => ApiError::bad_request("customer_exists", "The customer exists already")
                .with_status(StatusCode::CONFLICT),
            CustomerError::Anonymous => ApiError::field("name", "A customer needs a name or an email"),
        })
    }
}

pub fn product_not_found() -> ApiError {
    ApiError::not_found("Product not found").with_code("product_not_found")
}

pub fn customer_not_found() -> ApiError {
    ApiError::not_found("Customer not found").with_code("customer_not_found")
}
