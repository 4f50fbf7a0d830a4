"""The election's web app: `streamlit run streamlit_app.py`. The results, and the ballot ("Cast your vote")
unless DASHBOARD_READ_ONLY is set; see realtime_voting/web/dashboard.py and realtime_voting/web/ballot_page.py."""

from realtime_voting.web.dashboard import navigation

navigation().run()
