// @generated automatically by Diesel CLI.

diesel::table! {
    catalogue_stats (id) {
        id -> Bool,
        product_count -> Int8,
    }
}

diesel::table! {
    coupon_stock_stripes (coupon_id, stripe) {
        coupon_id -> Int8,
        stripe -> Int2,
        remaining -> Int8,
    }
}

diesel::table! {
    coupons (id) {
        id -> Int8,
        name -> Text,
        discount_type -> Text,
        discount_value -> Int8,
        total_quantity -> Int8,
        starts_at -> Timestamptz,
        ends_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    daily_product_sales (business_date, product_id) {
        business_date -> Date,
        product_id -> Int8,
        quantity -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (user_id, method, path, key) {
        user_id -> Int8,
        method -> Text,
        path -> Text,
        key -> Text,
        fingerprint -> Bytea,
        lease_token -> Uuid,
        locked_until -> Timestamptz,
        response_status -> Nullable<Int2>,
        response_body -> Nullable<Bytea>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    order_lines (order_id, product_id) {
        order_id -> Int8,
        product_id -> Int8,
        product_name -> Text,
        unit_price -> Int8,
        quantity -> Int8,
        amount -> Int8,
    }
}

diesel::table! {
    orders (id) {
        id -> Int8,
        user_id -> Int8,
        status -> Text,
        total_amount -> Int8,
        discount_amount -> Int8,
        pay_amount -> Int8,
        user_coupon_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        paid_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    outbox_events (id) {
        id -> Uuid,
        event_type -> Text,
        aggregate_id -> Int8,
        payload -> Json,
        created_at -> Timestamptz,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    point_history (id) {
        id -> Int8,
        user_id -> Int8,
        kind -> Text,
        amount -> Int8,
        balance_after -> Int8,
        order_id -> Nullable<Int8>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    point_wallets (user_id) {
        user_id -> Int8,
        balance -> Int8,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    products (id) {
        id -> Int8,
        name -> Text,
        description -> Text,
        price -> Int8,
        stock -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    user_coupons (id) {
        id -> Int8,
        user_id -> Int8,
        coupon_id -> Int8,
        status -> Text,
        issued_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    user_subjects (user_id) {
        subject -> Text,
        user_id -> Int8,
        created_at -> Timestamptz,
        issuer -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(coupon_stock_stripes -> coupons (coupon_id));
diesel::joinable!(daily_product_sales -> products (product_id));
diesel::joinable!(orders -> user_coupons (user_coupon_id));
diesel::joinable!(orders -> users (user_id));
diesel::joinable!(point_wallets -> users (user_id));
diesel::joinable!(user_coupons -> coupons (coupon_id));
diesel::joinable!(user_coupons -> users (user_id));
diesel::joinable!(user_subjects -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    catalogue_stats,
    coupon_stock_stripes,
    coupons,
    daily_product_sales,
    idempotency_keys,
    order_lines,
    orders,
    outbox_events,
    point_history,
    point_wallets,
    products,
    user_coupons,
    user_subjects,
    users,
);
