"""The web app (``streamlit_app.py``): the live results, and the ballot for voters who vote in person.

- ``dashboard``       the results page, top to bottom, and the app's navigation
- ``dashboard_data``  the results read from their topics and the register's counts, with no Streamlit in it
- ``ballot_page``     the "Cast your vote" page: sign in, choose, cast through the ballot box
- ``pages/``          the pages' scripts, which ``st.Page`` runs as files
"""
