from __future__ import annotations

from django.urls import path

from campaigns import views

app_name = "campaigns"
urlpatterns = [
    path("", views.campaign_list, name="list"),
    path("new/", views.campaign_new, name="new"),
    path("<uuid:campaign_id>/", views.campaign_detail, name="detail"),
    path("<uuid:campaign_id>/cancel", views.campaign_cancel, name="cancel"),
    path("<uuid:campaign_id>/retry-failed", views.campaign_retry_failed, name="retry-failed"),
    path("<uuid:campaign_id>/rows/<int:row>/again", views.campaign_row_again, name="row-again"),
    path("<uuid:campaign_id>/download.zip", views.campaign_download, name="download"),
    path("<uuid:campaign_id>/publish", views.campaign_publish, name="publish"),
]
