//! The shop's use cases: one type per user action or job, each with its own error
//! enum, written against the ports of the `domain` crate and nothing else.
//!
//! [`UseCases`] bundles them for the driving adapters (HTTP, schedulers).

/// Implements `Debug` for use cases, whose ports are opaque trait objects.
macro_rules! debug_opaque {
    ($($ty:ident),+ $(,)?) => {
        $(impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty)).finish_non_exhaustive()
            }
        })+
    };
}
pub(crate) use debug_opaque;

pub mod catalog;
pub mod coupons;
pub mod demo;
pub mod expiry;
pub mod idempotency;
pub mod ops;
pub mod orders;
pub mod outbox;
pub mod points;
pub mod sales;
pub mod users;

use std::sync::Arc;

use domain::ports::{
    Clock, ComponentStatus, CouponStore, DataPlatform, HealthCheck, IdempotencyStore, OrderStore,
    OutboxStore, PointStore, ProductRepository, SalesStore, UserRepository,
};

/// The driven adapters the use cases need.
#[derive(Clone)]
pub struct Ports {
    pub clock: Arc<dyn Clock>,
    pub users: Arc<dyn UserRepository>,
    pub points: Arc<dyn PointStore>,
    pub idempotency: Arc<dyn IdempotencyStore>,
    pub health: Arc<dyn HealthCheck>,
    /// The parts that work beside the requests, shown in the readiness detail.
    pub components: Vec<Arc<dyn ComponentStatus>>,
    pub products: Arc<dyn ProductRepository>,
    pub coupons: Arc<dyn CouponStore>,
    pub orders: Arc<dyn OrderStore>,
    pub sales: Arc<dyn SalesStore>,
    pub outbox: Arc<dyn OutboxStore>,
    pub data_platform: Arc<dyn DataPlatform>,
}

/// Business settings from configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long an order waits for payment.
    pub payment_timeout: chrono::Duration,
    /// IANA zone of the business day.
    pub business_timezone: String,
}

impl std::fmt::Debug for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// Every use case, wired to one set of ports.
#[derive(Debug, Clone)]
pub struct UseCases {
    pub create_user: users::CreateUser,
    pub get_user: users::GetUser,
    pub register_subject: users::RegisterSubject,
    pub resolve_subject: users::ResolveSubject,
    pub adopt_unkeyed_subjects: users::AdoptUnkeyedSubjects,
    pub charge_points: points::ChargePoints,
    pub get_balance: points::GetBalance,
    pub get_point_history: points::GetPointHistory,
    pub idempotency: idempotency::Idempotency,
    pub check_readiness: ops::CheckReadiness,
    pub create_product: catalog::CreateProduct,
    pub get_product: catalog::GetProduct,
    pub list_products: catalog::ListProducts,
    pub update_product: catalog::UpdateProduct,
    pub restock_product: catalog::RestockProduct,
    pub create_coupon: coupons::CreateCoupon,
    pub get_coupon: coupons::GetCoupon,
    pub issue_coupon: coupons::IssueCoupon,
    pub list_user_coupons: coupons::ListUserCoupons,
    pub seed_demo_data: demo::SeedDemoData,
    pub place_order: orders::PlaceOrder,
    pub pay_order: orders::PayOrder,
    pub cancel_order: orders::CancelOrder,
    pub get_order: orders::GetOrder,
    pub list_orders: orders::ListOrders,
    pub expire_due_orders: orders::ExpireDueOrders,
    pub expiry_schedule: expiry::ExpirySchedule,
    pub get_best_sellers: sales::GetBestSellers,
    pub refresh_best_sellers: sales::RefreshBestSellers,
    pub deliver_events: outbox::DeliverEvents,
}

impl UseCases {
    pub fn new(ports: &Ports, settings: &Settings) -> Self {
        let ranking = sales::RankingCache::default();
        let subjects = users::SubjectCache::default();
        Self {
            create_user: users::CreateUser::new(ports.users.clone(), ports.clock.clone()),
            get_user: users::GetUser::new(ports.users.clone()),
            register_subject: users::RegisterSubject::new(
                ports.users.clone(),
                ports.clock.clone(),
                subjects.clone(),
            ),
            resolve_subject: users::ResolveSubject::new(ports.users.clone(), subjects),
            adopt_unkeyed_subjects: users::AdoptUnkeyedSubjects::new(ports.users.clone()),
            charge_points: points::ChargePoints::new(ports.points.clone(), ports.clock.clone()),
            get_balance: points::GetBalance::new(ports.points.clone()),
            get_point_history: points::GetPointHistory::new(ports.points.clone()),
            idempotency: idempotency::Idempotency::new(
                ports.idempotency.clone(),
                ports.clock.clone(),
            ),
            check_readiness: ops::CheckReadiness::new(
                ports.health.clone(),
                ports.components.clone(),
            ),
            create_product: catalog::CreateProduct::new(
                ports.products.clone(),
                ports.clock.clone(),
            ),
            get_product: catalog::GetProduct::new(ports.products.clone()),
            list_products: catalog::ListProducts::new(ports.products.clone()),
            update_product: catalog::UpdateProduct::new(
                ports.products.clone(),
                ports.clock.clone(),
            ),
            restock_product: catalog::RestockProduct::new(
                ports.products.clone(),
                ports.clock.clone(),
            ),
            create_coupon: coupons::CreateCoupon::new(ports.coupons.clone(), ports.clock.clone()),
            get_coupon: coupons::GetCoupon::new(ports.coupons.clone()),
            issue_coupon: coupons::IssueCoupon::new(ports.coupons.clone(), ports.clock.clone()),
            list_user_coupons: coupons::ListUserCoupons::new(
                ports.coupons.clone(),
                ports.clock.clone(),
            ),
            place_order: orders::PlaceOrder::new(ports.orders.clone(), settings.payment_timeout),
            pay_order: orders::PayOrder::new(ports.orders.clone()),
            cancel_order: orders::CancelOrder::new(ports.orders.clone()),
            get_order: orders::GetOrder::new(ports.orders.clone()),
            list_orders: orders::ListOrders::new(ports.orders.clone()),
            expire_due_orders: orders::ExpireDueOrders::new(ports.orders.clone()),
            expiry_schedule: expiry::ExpirySchedule::new(
                ports.orders.clone(),
                ports.clock.clone(),
                settings.payment_timeout,
            ),
            get_best_sellers: sales::GetBestSellers::new(
                ports.sales.clone(),
                ports.clock.clone(),
                settings.business_timezone.clone(),
                ranking.clone(),
            ),
            refresh_best_sellers: sales::RefreshBestSellers::new(
                ports.sales.clone(),
                ports.clock.clone(),
                settings.business_timezone.clone(),
                ranking,
            ),
            deliver_events: outbox::DeliverEvents::new(
                ports.outbox.clone(),
                ports.data_platform.clone(),
                ports.clock.clone(),
            ),
            seed_demo_data: demo::SeedDemoData::new(
                ports.products.clone(),
                ports.coupons.clone(),
                ports.clock.clone(),
            ),
        }
    }
}
