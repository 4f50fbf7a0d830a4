"""The "Cast your vote" page of streamlit_app.py (its st.Page runs this file).

See realtime_voting/web/ballot_page.py."""

from realtime_voting.web.ballot_page import render

render()
