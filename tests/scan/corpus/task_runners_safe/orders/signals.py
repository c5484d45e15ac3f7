def on_order_saved(sender, instance, **kwargs):
    instance.refresh_from_db()
