from django.db import models


class Order(models.Model):
    customer = models.TextField()
    confirmed = models.BooleanField(default=False)
    # The tasks that ran for this order, in the order they ran.
    log = models.JSONField(default=list)
