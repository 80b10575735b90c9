"""The browser harness itself: a member logs in through the real form and lands on the home page."""

from tests.e2e.conftest import login, screenshot
from tests.factories import MembershipFactory


def test_a_member_logs_in_and_sees_their_organization(live_app, page):
    membership = MembershipFactory(organization__name="Acme Dental")
    login(page, live_app, membership.user.username)
    assert "Acme Dental" in page.content()
    assert screenshot(page, "home").stat().st_size > 0


def test_a_wrong_password_shows_the_form_error(live_app, page):
    membership = MembershipFactory()
    login(page, live_app, membership.user.username, password="not the password")
    assert "didn't match" in page.content()
